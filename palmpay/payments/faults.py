"""Fault injection for the crash tests: the process kills itself at a named commit point.

Off unless armed: :func:`arm` is called by the API's start-up with ``PALMPAY_FAULT_POINT``
(:attr:`palmpay.config.Settings.fault_point`), and :func:`reached` — called at each point below —
then ends the process with ``os._exit(137)`` (what ``kill -9`` leaves: no ``finally``, no
rollback, no response) the first time the named point is reached. Never set in production.

Points (:data:`POINTS`), in the order a payment passes them:

``payment.after_intent``     the authorisation intent is committed, the acquirer not yet called
``payment.after_acquirer``   the acquirer authorised (and captured), nothing else committed
``payment.after_commit``     the payment row and its ledger entries are committed
``idempotency.after_store``  the response is stored under its Idempotency-Key, not yet sent
``enrollment.after_commit``  a new customer is committed, the response not yet stored
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["POINTS", "arm", "armed", "reached"]

log = logging.getLogger(__name__)

POINTS = frozenset({
    "payment.after_intent",
    "payment.after_acquirer",
    "payment.after_commit",
    "idempotency.after_store",
    "enrollment.after_commit",
})

_armed: str | None = None


def arm(point: str | None) -> None:
    """Arm ``point`` (``None`` disarms); ``ValueError`` for an unknown name."""
    global _armed
    if point is not None and point not in POINTS:
        raise ValueError(f"unknown fault point {point!r}; known: {', '.join(sorted(POINTS))}")
    if point is not None:
        log.warning("FAULT INJECTION ARMED: the process exits at %s", point)
    _armed = point


def armed() -> str | None:
    """The armed point, if any."""
    return _armed


def reached(point: str) -> None:
    """Exit the process at once (status 137) when ``point`` is the armed one."""
    if _armed is not None and _armed == point:
        sys.stderr.write(f"palmpay fault point {point}: exiting\n")
        sys.stderr.flush()
        os._exit(137)
