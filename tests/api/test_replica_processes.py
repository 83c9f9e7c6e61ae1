"""Two real API processes (``palmpay serve``, uvicorn) on one PostgreSQL schema, and
``palmpay serve --workers 2``.

Issue 11's scale-out test: enroll through process one and pay by palm through process two as
soon as the change reaches it (the delay is logged and kept as a test property, never
asserted: convergence is asserted within a generous bound); the same palm enrolled again
through two is refused (two catches up before its duplicate check), also when both enroll it at
once; unenroll through two and one refuses the palm; restart two while enrollments go on
through one, and its replica converges to the database (the same customers and samples, each
of them recognised). The poll safety net is turned off (``PALMPAY_REPLICA_POLL_S=3600``), so
what delivers the changes is LISTEN/NOTIFY, the load at start and the catch-up on connect.
About 40 s on 2 cores: marked slow.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from palmpay.api.keys import create_api_key
from palmpay.config import Settings
from palmpay.db import Database
from palmpay.payments.admin import gallery_size
from palmpay.payments.models import ServiceInstance
from tests.api.conftest import CARDS, Hand
from tests.api.crashkit import free_port, stop_process

log = logging.getLogger(__name__)

PG_ONLY = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
#: Generous bounds: a server start (models, migrations, index load) and convergence.
START_S = 120.0
CONVERGE_S = 30.0
_TIMEOUT_S = 120.0
_SERVE = "import sys; from palmpay.cli import main; sys.exit(main(sys.argv[1:]))"


class ApiProcess:
    """``palmpay serve`` in a child process on the test database (settings from env)."""

    def __init__(self, name: str, database_url: str, workdir: Path, workers: int = 1) -> None:
        self.name = name
        self.workers = workers
        self.env = {**os.environ, "PALMPAY_DATABASE_URL": database_url,
                    "PALMPAY_DATA_DIR": str(workdir / "data"), "PALMPAY_DEV_MODE": "true",
                    "PALMPAY_REPLICA_POLL_S": "3600", "PALMPAY_INSTANCE_LEASE_S": "5",
                    "PALMPAY_UNRECOGNISED_MAX_FAILURES": "1000",
                    "PALMPAY_RATE_LIMIT_PAYMENTS": "10000/minute",
                    "PALMPAY_RATE_LIMIT_REQUESTS": "10000/minute",
                    "PALMPAY_RATE_LIMIT_CUSTOMERS": "10000/minute"}
        self.env.pop("PALMPAY_FAULT_POINT", None)
        self.log = workdir / f"server-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self) -> None:
        assert self.proc is None
        port = free_port()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE, "serve", "--host", "127.0.0.1", "--port",
                 str(port), "--workers", str(self.workers)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None


class Client:
    """The requests of the test, against any process."""

    def __init__(self, keys: dict[str, str], hands: dict[str, Hand]) -> None:
        self.keys = keys
        self.hands = hands

    def _auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def enroll(self, api: ApiProcess, who: str, card: str) -> httpx.Response:
        files = [("images", (f"{who}{n}.png", b, "image/png"))
                 for n, b in enumerate(self.hands[who].enroll)]
        return httpx.post(api.base + "/v1/customers", files=files, timeout=_TIMEOUT_S,
                          headers=self._auth("kiosk"),
                          data={"name": who.capitalize(), "card_number": card,
                                "exp_month": "12", "exp_year": "2031", "consent": "true"})

    def pay(self, api: ApiProcess, who: str) -> httpx.Response:
        files = [("frames", (f"f{n}.jpg", b, "image/jpeg"))
                 for n, b in enumerate(self.hands[who].probe)]
        return httpx.post(api.base + "/v1/payments", files=files, timeout=_TIMEOUT_S,
                          headers=self._auth("terminal"),
                          data={"amount": "1250", "currency": "eur"})

    def unenroll(self, api: ApiProcess, customer_id: str, who: str, last4: str
                 ) -> httpx.Response:
        files = [("frames", (f"f{n}.jpg", b, "image/jpeg"))
                 for n, b in enumerate(self.hands[who].probe)]
        return httpx.post(api.base + f"/v1/customers/{customer_id}/unenroll", files=files,
                          data={"card_last4": last4}, headers=self._auth("kiosk"),
                          timeout=_TIMEOUT_S)

    def status(self, api: ApiProcess) -> dict:
        r = httpx.get(api.base + "/v1/status", headers=self._auth("admin"), timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


def _recognised_by(client: Client, api: ApiProcess, who: str, customer_id: str) -> float:
    """Pay with ``who``'s palm through ``api`` until it is charged to ``customer_id`` (every
    other answer must be palm_not_recognised); the seconds it took."""
    start = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        r = client.pay(api, who)
        if r.status_code == 201:
            assert r.json()["customer"] == customer_id, r.text
            took = time.monotonic() - start
            log.info("%s recognised %s after %.3f s (%d attempts)", api.name, who, took,
                     attempts)
            return took
        assert r.json()["code"] == "palm_not_recognised", r.text
        assert time.monotonic() - start < CONVERGE_S, f"{api.name} never recognised {who}"


def _database_gallery(db_url: str) -> tuple[int, int]:
    """(active customers, their templates) in the database."""
    return gallery_size(Settings(database_url=db_url))


def _keys(db_url: str) -> dict[str, str]:
    db = Database(db_url)
    try:
        return {scope: create_api_key(db, f"replica {scope}", scope)[1]
                for scope in ("kiosk", "terminal", "admin")}
    finally:
        db.dispose()


@pytest.fixture
def processes(db_url, tmp_path) -> Iterator[list[ApiProcess]]:
    started: list[ApiProcess] = []
    yield started
    for api in started:
        api.stop()


@pytest.mark.slow
@PG_ONLY
def test_two_api_processes_stay_in_step(db_url, tmp_path, hands, processes, record_property):
    one = ApiProcess("one", db_url, tmp_path)
    two = ApiProcess("two", db_url, tmp_path)
    processes += [one, two]
    one.start()  # first alone: it migrates and creates the dev keyring
    two.start()
    client = Client(_keys(db_url), hands)

    # Enroll through one, pay through two.
    r = client.enroll(one, "ann", CARDS["visa"])
    assert r.status_code == 201, r.text
    ann = r.json()["id"]
    delay = _recognised_by(client, two, "ann", ann)
    record_property("enroll_on_one_to_recognised_on_two_s", round(delay, 3))

    # The same palm through two, at once: refused (two caught up before checking).
    r = client.enroll(two, "ann", CARDS["mastercard"])
    assert r.status_code == 409 and r.json()["code"] == "palm_already_enrolled", r.text
    # Both processes enrolling one palm at the same time: exactly one succeeds.
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda args: client.enroll(*args),
                             [(one, "bob", CARDS["amex"]), (two, "bob", CARDS["discover"])]))
    assert sorted(r.status_code for r in both) == [201, 409], [r.text for r in both]
    bob = next(r.json()["id"] for r in both if r.status_code == 201)

    # Unenroll through two: one refuses the palm.
    r = client.unenroll(two, ann, "ann", "4242")
    assert r.status_code == 200, r.text
    refused = client.pay(one, "ann")
    assert refused.status_code == 422 and refused.json()["code"] == "palm_not_recognised"
    _recognised_by(client, one, "bob", bob)

    # Restart two while one enrolls more customers (ann's palm is free again).
    # Two enrollments while two stops and starts (its load must see them), two more once it
    # serves again (its listener must deliver them).
    enrolled: dict[str, str] = {}
    failures: list[str] = []
    restarted = threading.Event()

    def enroll_more() -> None:
        for who, card in (("cat", "5105105105105100"), ("dan", "4111111111111111"),
                          ("stranger", "4012888888881881"), ("ann", "5555555555554444")):
            if who == "stranger":
                restarted.wait(START_S)
            response = client.enroll(one, who, card)
            if response.status_code == 201:
                enrolled[who] = response.json()["id"]
            else:
                failures.append(response.text)

    writer = threading.Thread(target=enroll_more)
    writer.start()
    try:
        two.stop()
        two.start()
    finally:
        restarted.set()
    writer.join(_TIMEOUT_S * 4)
    assert not failures and len(enrolled) == 4, failures

    customers, samples = _database_gallery(db_url)
    assert customers == 5  # bob + the four

    def two_matches_database() -> bool:
        status = client.status(two)
        return (status["customers"] == customers
                and status["operating_point"]["enrolled_samples"] == samples)

    start = time.monotonic()
    while not two_matches_database():
        assert time.monotonic() - start < CONVERGE_S, client.status(two)
        time.sleep(0.05)
    for who, customer_id in enrolled.items():
        _recognised_by(client, two, who, customer_id)
    _recognised_by(client, two, "bob", bob)


@pytest.mark.slow
@PG_ONLY
def test_serve_with_two_workers_runs_two_replicas(db_url, tmp_path, hands, processes):
    api = ApiProcess("workers", db_url, tmp_path, workers=2)
    processes.append(api)
    api.start()
    db = Database(db_url)
    try:
        deadline = time.monotonic() + START_S
        while True:  # each worker registers its own instance once its lifespan ran
            with db.session(readonly=True) as s:
                pids = set(s.scalars(select(ServiceInstance.pid).where(
                    ServiceInstance.stopped_at.is_(None))))
            if len(pids) == 2:
                break
            assert time.monotonic() < deadline, pids
            time.sleep(0.1)
    finally:
        db.dispose()
    client = Client(_keys(db_url), hands)
    r = client.enroll(api, "cat", CARDS["visa"])
    assert r.status_code == 201, r.text
    # Whichever worker answers, the palm pays (a few tries reach both).
    for _ in range(4):
        _recognised_by(client, api, "cat", r.json()["id"])


def test_serve_refuses_two_workers_on_sqlite(tmp_path):
    env = {**os.environ, "PALMPAY_DATA_DIR": str(tmp_path / "data"),
           "PALMPAY_DEV_MODE": "true"}
    env.pop("PALMPAY_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", _SERVE, "serve", "--workers", "2"], env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == 2
    assert b"--workers 2 needs PostgreSQL" in done.stderr
