"""The acquirer seam: :class:`Processor` (what a real acquirer adapter implements) and
:class:`SimulatedAcquirer` (test cards, used by the demo and the tests).

A processor sees the card number only in :meth:`Processor.authorize` (the service opens it from
the vault for that one call); capture, void and refund refer to the authorisation code. A decline
is a normal result (``Authorization(approved=False, decline_code=...)``); a failure to talk to
the acquirer is a :class:`ProcessorError`.

Crash safety: :meth:`Processor.authorize` takes a ``reference`` (the payment id, recorded in an
authorisation intent before the call, :mod:`palmpay.payments.intents`) that the acquirer treats
as an idempotency reference — the same reference authorises once — and
:meth:`Processor.lookup` tells start-up reconciliation what the acquirer holds for it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import string
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from palmpay.payments.cards import is_expired, luhn_ok

__all__ = [
    "Authorization",
    "AuthorizationRecord",
    "Processor",
    "ProcessorError",
    "SimulatedAcquirer",
    "TEST_CARDS",
]

log = logging.getLogger(__name__)

# Letters and digits: long all-digit runs (which look like card numbers to scanners) are rare.
_AUTH_ALPHABET = string.ascii_letters + string.digits

#: SimulatedAcquirer's special card numbers and what they do (any other valid card approves,
#: subject to the per-card limit).
TEST_CARDS: dict[str, str] = {
    "4242424242424242": "approve",
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
}


class ProcessorError(RuntimeError):
    """The acquirer could not be reached or refused an operation on an authorisation (not a
    decline). Messages never contain a card number."""


@dataclass(frozen=True)
class Authorization:
    """An acquirer's answer: ``approved`` with ``auth_code``, or not with ``decline_code``."""

    approved: bool
    auth_code: str | None = None
    decline_code: str | None = None


@dataclass(frozen=True)
class AuthorizationRecord:
    """What the acquirer holds for one authorisation reference (:meth:`Processor.lookup`):
    the authorised ``amount``, what was ``captured`` of it, and whether it was ``voided``."""

    reference: str
    auth_code: str
    amount: int
    captured: int
    voided: bool


@runtime_checkable
class Processor(Protocol):
    """What the payment service needs from an acquirer. Amounts in minor units.

    - ``authorize``: hold ``amount`` on the card; returns an :class:`Authorization`.
      ``reference`` (the payment id) is the acquirer's idempotency reference: a second call
      with the same reference returns the first approval and holds nothing more.
    - ``lookup``: the approved authorisation made under ``reference``, or ``None`` (never
      authorised, or declined).
    - ``capture``: take ``amount`` (≤ the authorised amount) of an authorisation; the
      acquirer releases the rest. Called at most once per authorisation.
    - ``void``: release an uncaptured authorisation entirely.
    - ``refund``: give back ``amount`` of what was captured (may be called several times).

    All but ``authorize`` raise :class:`ProcessorError` on failure.
    """

    def authorize(
        self, pan: str, exp_month: int, exp_year: int, amount: int, currency: str,
        reference: str | None = None,
    ) -> Authorization: ...

    def lookup(self, reference: str) -> AuthorizationRecord | None: ...

    def capture(self, auth_code: str, amount: int) -> None: ...

    def void(self, auth_code: str) -> None: ...

    def refund(self, auth_code: str, amount: int) -> None: ...


_SCHEMA = """CREATE TABLE IF NOT EXISTS holds (
    auth_code TEXT PRIMARY KEY, reference TEXT UNIQUE, card_key TEXT NOT NULL,
    authorised INTEGER NOT NULL, captured INTEGER NOT NULL DEFAULT 0,
    refunded INTEGER NOT NULL DEFAULT 0, voided INTEGER NOT NULL DEFAULT 0)"""
#: What an authorisation still takes from the card's limit (see SimulatedAcquirer).
_OUTSTANDING = ("CASE WHEN voided THEN 0 WHEN captured > 0 THEN captured - refunded "
                "ELSE authorised END")


@dataclass
class _Hold:
    card_key: str
    authorised: int
    captured: int = 0
    refunded: int = 0
    voided: bool = False


class SimulatedAcquirer:
    """A simulated acquirer with Stripe-like test cards (:data:`TEST_CARDS`).

    Rules, in order: an invalid number (Luhn) declines ``card_declined``; an expired card declines
    ``expired_card``; the two decline test cards decline with their code; then the per-card
    limit: with ``card_limit > 0``, an authorisation declines ``insufficient_funds`` when the
    card's *outstanding* total plus ``amount`` would exceed it. Outstanding = uncaptured holds +
    captured − refunded (a voided or partially captured authorisation frees the released part;
    refunds free what they return). So a single payment above the limit always declines, and
    many smaller ones decline once they add up. ``card_limit=0`` disables the limit.

    State: in memory (``journal=None``: a new process starts with every card at zero), or in
    the SQLite file ``journal`` (``PALMPAY_SIM_ACQUIRER_JOURNAL``), written through on every
    operation, so authorisations survive a crash of the server and :meth:`lookup` finds them
    after a restart, as a real acquirer's would. Without a journal, authorisation codes this
    instance did not issue (``auth_...`` from an earlier process) are adopted on capture, void
    and refund, so payments survive a restart of the demo server.

    Thread-safe (and, with a journal, safe between processes: each operation is one
    ``BEGIN IMMEDIATE`` transaction). Cards are keyed by a SHA-256 of the number.
    """

    def __init__(self, card_limit: int = 100_000, journal: Path | None = None) -> None:
        if card_limit < 0:
            raise ValueError("card_limit must be >= 0")
        self.card_limit = card_limit
        self.journal = journal
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(journal) if journal else ":memory:",
                                     isolation_level=None, check_same_thread=False,
                                     timeout=30.0)
        self._conn.execute(_SCHEMA)
        self._lock = threading.Lock()

    def _tx(self) -> _Transaction:
        return _Transaction(self._lock, self._conn)

    def outstanding(self, pan: str) -> int:
        """The card's outstanding total (see the class docstring)."""
        key = hashlib.sha256(pan.encode()).hexdigest()
        with self._tx() as db:
            return int(db.execute(f"SELECT COALESCE(SUM({_OUTSTANDING}), 0) FROM holds "
                                  "WHERE card_key = ?", (key,)).fetchone()[0])

    def records(self) -> list[AuthorizationRecord]:
        """Every approved authorisation made with a reference (for reconciliation reports)."""
        with self._tx() as db:
            rows = db.execute("SELECT reference, auth_code, authorised, captured, voided "
                              "FROM holds WHERE reference IS NOT NULL ORDER BY rowid").fetchall()
        return [AuthorizationRecord(r[0], r[1], int(r[2]), int(r[3]), bool(r[4])) for r in rows]

    def lookup(self, reference: str) -> AuthorizationRecord | None:
        with self._tx() as db:
            row = db.execute("SELECT reference, auth_code, authorised, captured, voided "
                             "FROM holds WHERE reference = ?", (reference,)).fetchone()
        if row is None:
            return None
        return AuthorizationRecord(row[0], row[1], int(row[2]), int(row[3]), bool(row[4]))

    def authorize(
        self, pan: str, exp_month: int, exp_year: int, amount: int, currency: str,
        reference: str | None = None,
    ) -> Authorization:
        if amount <= 0:
            raise ProcessorError("authorisation amount must be positive")
        if not pan.isdigit() or not luhn_ok(pan):
            return Authorization(False, decline_code="card_declined")
        if is_expired(exp_month, exp_year, datetime.now(UTC)):
            return Authorization(False, decline_code="expired_card")
        rule = TEST_CARDS.get(pan, "approve")
        if rule != "approve":
            return Authorization(False, decline_code=rule)
        key = hashlib.sha256(pan.encode()).hexdigest()
        with self._tx() as db:
            if reference is not None:
                seen = db.execute("SELECT auth_code FROM holds WHERE reference = ?",
                                  (reference,)).fetchone()
                if seen is not None:  # the same reference authorises once
                    log.info("simulated acquirer: %s already authorised", reference)
                    return Authorization(True, auth_code=seen[0])
            if self.card_limit:
                used = db.execute(f"SELECT COALESCE(SUM({_OUTSTANDING}), 0) FROM holds "
                                  "WHERE card_key = ?", (key,)).fetchone()[0]
                if used + amount > self.card_limit:
                    return Authorization(False, decline_code="insufficient_funds")
            auth_code = "auth_" + "".join(secrets.choice(_AUTH_ALPHABET) for _ in range(16))
            db.execute("INSERT INTO holds (auth_code, reference, card_key, authorised) "
                       "VALUES (?, ?, ?, ?)", (auth_code, reference, key, amount))
        return Authorization(True, auth_code=auth_code)

    @staticmethod
    def _hold(db: sqlite3.Connection, auth_code: str, amount: int) -> _Hold:
        row = db.execute("SELECT card_key, authorised, captured, refunded, voided FROM holds "
                         "WHERE auth_code = ?", (auth_code,)).fetchone()
        if row is not None:
            return _Hold(row[0], int(row[1]), int(row[2]), int(row[3]), bool(row[4]))
        if not auth_code.startswith("auth_"):
            raise ProcessorError(f"unknown authorisation {auth_code}")
        # Made by an earlier process (state in memory): adopt it as-is.
        log.info("simulated acquirer adopting authorisation %s from an earlier run", auth_code)
        db.execute("INSERT INTO holds (auth_code, card_key, authorised) VALUES (?, '', ?)",
                   (auth_code, amount))
        return _Hold("", amount)

    @staticmethod
    def _save(db: sqlite3.Connection, auth_code: str, hold: _Hold) -> None:
        db.execute("UPDATE holds SET authorised = ?, captured = ?, refunded = ?, voided = ? "
                   "WHERE auth_code = ?",
                   (hold.authorised, hold.captured, hold.refunded, int(hold.voided), auth_code))

    def capture(self, auth_code: str, amount: int) -> None:
        with self._tx() as db:
            hold = self._hold(db, auth_code, amount)
            if hold.voided or hold.captured:
                raise ProcessorError(f"authorisation {auth_code} is already closed")
            if not 0 < amount <= hold.authorised:
                raise ProcessorError(f"capture of {amount} outside 1..{hold.authorised}")
            hold.captured = amount
            self._save(db, auth_code, hold)

    def void(self, auth_code: str) -> None:
        with self._tx() as db:
            hold = self._hold(db, auth_code, 0)
            if hold.captured:
                raise ProcessorError(f"authorisation {auth_code} is captured; refund it instead")
            hold.voided = True
            self._save(db, auth_code, hold)

    def refund(self, auth_code: str, amount: int) -> None:
        with self._tx() as db:
            hold = self._hold(db, auth_code, 0)
            if not hold.card_key:  # adopted: captured before a restart, amount unknown here
                hold.captured = hold.authorised = max(hold.captured, hold.refunded + amount)
            if not 0 < amount <= hold.captured - hold.refunded:
                raise ProcessorError(f"refund of {amount} exceeds what is left on {auth_code}")
            hold.refunded += amount
            self._save(db, auth_code, hold)

    def close(self) -> None:
        """Close the journal (the acquirer is unusable afterwards)."""
        with self._lock:
            self._conn.close()


class _Transaction:
    """``with``: the acquirer's lock and one ``BEGIN IMMEDIATE`` transaction on its store
    (committed on success, rolled back when the block raises)."""

    def __init__(self, lock: threading.Lock, conn: sqlite3.Connection) -> None:
        self._lock = lock
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def __exit__(self, exc_type: object, _exc: object, _tb: object) -> None:
        try:
            self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._lock.release()
