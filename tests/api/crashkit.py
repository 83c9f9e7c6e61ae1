"""Crash harness: a real uvicorn process on a database, killed at a commit point, restarted.

Used by ``tests/api/test_crash.py`` and ``scripts/security/crash_retry.py``. The server runs
``uvicorn --factory palmpay.api.app:create_app`` with settings from the environment: the
database URL, a dev-mode keyring under the work folder, the simulated acquirer's journal (so
that its authorisations survive the kill and can be counted), a short instance lease and a very
long ``idempotency_wait_s`` — a retry that waited for the dead request instead of recovering it
would not answer within the client's timeout. ``PALMPAY_FAULT_POINT`` makes the process
``os._exit(137)`` at that point (:mod:`palmpay.payments.faults`).

:meth:`CrashBench.sale` runs one sale through a kill: the request under a fresh key dies with
the server, a clean server is started, the same request is retried with the same key, and the
acquirer journal and the database are compared: one captured authorisation for the sale, one
payment, no authorisation without a payment row, and the ledger check passing.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select

from palmpay.api.keys import create_api_key
from palmpay.db import Database
from palmpay.payments import ledger
from palmpay.payments.models import Customer, Payment

__all__ = ["CrashBench", "SaleResult", "PAYMENT_POINTS", "ENROLL_POINT", "free_port", "luhn_card",
           "stop_process"]

PAYMENT_POINTS = ("payment.after_intent", "payment.after_acquirer", "payment.after_commit",
                  "idempotency.after_store")
ENROLL_POINT = "enrollment.after_commit"
#: Client timeout: generous for image analysis, far below the server's idempotency wait.
_TIMEOUT_S = 120.0
_WAIT_S = 3600.0
_START_S = 120.0


@dataclass(frozen=True)
class SaleResult:
    """One kill and retry: what the killed process exited with, the retry's status and whether
    it was a replay, the object id it answered with, and the counts after it."""

    point: str
    exit_code: int | None
    retry_status: int
    retry_replayed: bool
    retry_id: str | None
    charges: int  # captured authorisations at the acquirer for this sale
    payments: int  # payment rows for this sale (by its amount)
    orphans: int  # authorisations held at the acquirer without a payment row (whole journal)
    ledger_ok: bool
    second_retry_same: bool  # a further retry replays the same object


def luhn_card(n: int) -> str:
    """The ``n``-th Luhn-valid 16-digit test card number (``5105 10…``), distinct per ``n``."""
    body = f"510510{n:09d}"
    total = 0
    for i, digit in enumerate(reversed(body)):
        d = int(digit) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn's graceful shutdown), then SIGKILL after 30 s; reaped either way."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class CrashBench:
    """A database, a work folder and the server process started on them (one at a time)."""

    def __init__(self, database_url: str, workdir: Path, enroll_images: dict[str, list[bytes]],
                 probe_frames: dict[str, list[bytes]], lease_s: float = 1.0) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.journal = workdir / "acquirer.sqlite3"
        self.enroll_images = enroll_images
        self.probe_frames = probe_frames
        self.lease_s = lease_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.keys: dict[str, str] = {}
        self._amount = 1000
        self.log = workdir / "server.log"

    # -- the server ---------------------------------------------------------------------------

    def start(self, fault: str | None = None) -> None:
        assert self.proc is None, "a server is running"
        port = free_port()
        env = {**os.environ, "PALMPAY_DATABASE_URL": self.database_url,
               "PALMPAY_DATA_DIR": str(self.workdir / "data"), "PALMPAY_DEV_MODE": "true",
               "PALMPAY_SIM_ACQUIRER_JOURNAL": str(self.journal),
               "PALMPAY_INSTANCE_LEASE_S": str(self.lease_s),
               "PALMPAY_IDEMPOTENCY_WAIT_S": str(_WAIT_S)}
        env.pop("PALMPAY_FAULT_POINT", None)
        if fault:
            env["PALMPAY_FAULT_POINT"] = fault
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "palmpay.api.app:create_app",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + _START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"server did not start; see {self.log}")
        if not self.keys:
            db = Database(self.database_url)
            try:
                for scope in ("kiosk", "terminal"):
                    self.keys[scope] = create_api_key(db, f"crash {scope}", scope)[1]
            finally:
                db.dispose()

    def wait_exit(self) -> int | None:
        """Reap the (killed) server; its exit code."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=60)
        finally:
            self.proc = None
        return code

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    # -- requests -----------------------------------------------------------------------------

    def enroll(self, who: str, card: str, key: str) -> httpx.Response:
        data = {"name": who.capitalize(), "card_number": card, "exp_month": "12",
                "exp_year": "2031", "consent": "true"}
        files = [("images", (f"{who}{n}.png", b, "image/png"))
                 for n, b in enumerate(self.enroll_images[who])]
        return httpx.post(self.base + "/v1/customers", data=data, files=files, timeout=_TIMEOUT_S,
                          headers={"Authorization": f"Bearer {self.keys['kiosk']}",
                                   "Idempotency-Key": key})

    def pay(self, who: str, amount: int, key: str) -> httpx.Response:
        files = [("frames", (f"frame{n}.jpg", b, "image/jpeg"))
                 for n, b in enumerate(self.probe_frames[who])]
        return httpx.post(self.base + "/v1/payments", files=files, timeout=_TIMEOUT_S,
                          data={"amount": str(amount), "currency": "eur"},
                          headers={"Authorization": f"Bearer {self.keys['terminal']}",
                                   "Idempotency-Key": key})

    # -- what happened ------------------------------------------------------------------------

    def holds(self) -> list[tuple[str, int, int, bool]]:
        """``(reference, authorised, captured, voided)`` of every authorisation in the journal."""
        if not self.journal.exists():
            return []
        with sqlite3.connect(self.journal) as conn:
            return [(r[0], int(r[1]), int(r[2]), bool(r[3])) for r in conn.execute(
                "SELECT reference, authorised, captured, voided FROM holds ORDER BY rowid")]

    def setup(self, who: str = "ann", card: str = "4242424242424242") -> str:
        """Start a clean server and enroll ``who`` (the payer of :meth:`sale`); the id."""
        self.start()
        response = self.enroll(who, card, f"enroll-{uuid.uuid4().hex}")
        if response.status_code != 201:
            raise RuntimeError(f"enrollment failed: {response.status_code} {response.text}")
        return response.json()["id"]

    def _counts(self, amount: int) -> tuple[int, bool, set[str]]:
        db = Database(self.database_url)
        try:
            with db.session(readonly=True) as s:
                payments = s.scalar(select(func.count()).select_from(Payment).where(
                    Payment.amount == amount)) or 0
                ids = set(s.scalars(select(Payment.id)))
                ok = ledger.check(s).ok
        finally:
            db.dispose()
        return payments, ok, ids

    def customers(self, name: str) -> int:
        db = Database(self.database_url)
        try:
            with db.session(readonly=True) as s:
                return s.scalar(select(func.count()).select_from(Customer).where(
                    Customer.name == name)) or 0
        finally:
            db.dispose()

    def sale(self, point: str, who: str = "ann") -> SaleResult:
        """A payment (or, at :data:`ENROLL_POINT`, an enrollment of ``who``) killed at
        ``point``, then retried with the same key on a clean server."""
        self.stop()
        self.start(fault=point)
        key = f"crash-{uuid.uuid4().hex}"
        self._amount += 1
        amount = self._amount  # one amount per sale: its payment rows are counted by it
        enroll = point == ENROLL_POINT
        card = luhn_card(self._amount)

        def request() -> httpx.Response:
            return self.enroll(who, card, key) if enroll else self.pay(who, amount, key)

        try:
            first = request()
            raise AssertionError(f"{point}: the server answered {first.status_code} instead "
                                 f"of dying: {first.text[:300]}")
        except httpx.TransportError:
            pass
        exit_code = self.wait_exit()
        self.start()
        retry = request()
        again = request()
        retry_id = retry.json().get("id") if retry.status_code < 300 else None
        payments, ok, ids = self._counts(amount)
        holds = self.holds()
        # Amounts are unique per sale: its authorisations are the holds of that amount.
        charges = sum(1 for _ref, authorised, captured, voided in holds
                      if authorised == amount and captured and not voided)
        orphans = sum(1 for ref, _a, _c, voided in holds if not voided and ref not in ids)
        if enroll:
            payments = self.customers(who.capitalize())
        return SaleResult(
            point=point, exit_code=exit_code, retry_status=retry.status_code,
            retry_replayed=retry.headers.get("idempotent-replayed") == "true",
            retry_id=retry_id, charges=charges, payments=payments, orphans=orphans,
            ledger_ok=ok, second_retry_same=(again.status_code == retry.status_code
                                             and again.json().get("id") == retry_id))
