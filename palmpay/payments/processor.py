"""The acquirer seam: :class:`Processor` (what a real acquirer adapter implements) and
:class:`SimulatedAcquirer` (test cards, used by the demo and the tests).

A processor sees the card number only in :meth:`Processor.authorize` (the service opens it from
the vault for that one call); capture, void and refund refer to the authorisation code. A decline
is a normal result (``Authorization(approved=False, decline_code=...)``); a failure to talk to
the acquirer is a :class:`ProcessorError`.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from palmpay.payments.cards import is_expired, luhn_ok

__all__ = [
    "Authorization",
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


@runtime_checkable
class Processor(Protocol):
    """What the payment service needs from an acquirer. Amounts in minor units.

    - ``authorize``: hold ``amount`` on the card; returns an :class:`Authorization`.
    - ``capture``: take ``amount`` (≤ the authorised amount) of an authorisation; the
      acquirer releases the rest. Called at most once per authorisation.
    - ``void``: release an uncaptured authorisation entirely.
    - ``refund``: give back ``amount`` of what was captured (may be called several times).

    All but ``authorize`` raise :class:`ProcessorError` on failure.
    """

    def authorize(
        self, pan: str, exp_month: int, exp_year: int, amount: int, currency: str
    ) -> Authorization: ...

    def capture(self, auth_code: str, amount: int) -> None: ...

    def void(self, auth_code: str) -> None: ...

    def refund(self, auth_code: str, amount: int) -> None: ...


@dataclass
class _Hold:
    card_key: str
    authorised: int
    captured: int = 0
    refunded: int = 0
    voided: bool = False

    @property
    def outstanding(self) -> int:
        """What the authorisation still takes from the card's limit."""
        if self.voided:
            return 0
        if self.captured:
            return self.captured - self.refunded
        return self.authorised


class SimulatedAcquirer:
    """An in-memory acquirer with Stripe-like test cards (:data:`TEST_CARDS`).

    Rules, in order: an invalid number (Luhn) declines ``card_declined``; an expired card declines
    ``expired_card``; the two decline test cards decline with their code; then the per-card
    limit: with ``card_limit > 0``, an authorisation declines ``insufficient_funds`` when the
    card's *outstanding* total plus ``amount`` would exceed it. Outstanding = uncaptured holds +
    captured − refunded, over this acquirer's lifetime (a voided or partially captured
    authorisation frees the released part; refunds free what they return). So a single payment
    above the limit always declines, and many smaller ones decline once they add up. State is per
    instance and in memory (a new process starts with every card at zero). ``card_limit=0``
    disables the limit.

    Authorisation codes this instance did not issue (``auth_...`` from an earlier process) are
    adopted on capture, void and refund, so payments survive a restart of the demo server.

    Thread-safe. Cards are keyed internally by a SHA-256 of the number (held in memory only).
    """

    def __init__(self, card_limit: int = 100_000) -> None:
        if card_limit < 0:
            raise ValueError("card_limit must be >= 0")
        self.card_limit = card_limit
        self._holds: dict[str, _Hold] = {}
        self._lock = threading.Lock()

    def outstanding(self, pan: str) -> int:
        """The card's outstanding total (see the class docstring)."""
        key = hashlib.sha256(pan.encode()).hexdigest()
        with self._lock:
            return sum(h.outstanding for h in self._holds.values() if h.card_key == key)

    def authorize(
        self, pan: str, exp_month: int, exp_year: int, amount: int, currency: str
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
        with self._lock:
            if self.card_limit:
                used = sum(h.outstanding for h in self._holds.values() if h.card_key == key)
                if used + amount > self.card_limit:
                    return Authorization(False, decline_code="insufficient_funds")
            auth_code = "auth_" + "".join(secrets.choice(_AUTH_ALPHABET) for _ in range(16))
            self._holds[auth_code] = _Hold(key, amount)
        return Authorization(True, auth_code=auth_code)

    def _hold(self, auth_code: str, amount: int) -> _Hold:
        hold = self._holds.get(auth_code)
        if hold is None:
            if not auth_code.startswith("auth_"):
                raise ProcessorError(f"unknown authorisation {auth_code}")
            # Made by an earlier process (state is in memory): adopt it as-is.
            log.info("simulated acquirer adopting authorisation %s from an earlier run", auth_code)
            hold = self._holds[auth_code] = _Hold("", amount)
        return hold

    def capture(self, auth_code: str, amount: int) -> None:
        with self._lock:
            hold = self._hold(auth_code, amount)
            if hold.voided or hold.captured:
                raise ProcessorError(f"authorisation {auth_code} is already closed")
            if not 0 < amount <= hold.authorised:
                raise ProcessorError(f"capture of {amount} outside 1..{hold.authorised}")
            hold.captured = amount

    def void(self, auth_code: str) -> None:
        with self._lock:
            hold = self._hold(auth_code, 0)
            if hold.captured:
                raise ProcessorError(f"authorisation {auth_code} is captured; refund it instead")
            hold.voided = True

    def refund(self, auth_code: str, amount: int) -> None:
        with self._lock:
            hold = self._hold(auth_code, 0)
            if not hold.card_key:  # adopted: captured before a restart, amount unknown here
                hold.captured = hold.authorised = max(hold.captured, hold.refunded + amount)
            if not 0 < amount <= hold.captured - hold.refunded:
                raise ProcessorError(f"refund of {amount} exceeds what is left on {auth_code}")
            hold.refunded += amount
