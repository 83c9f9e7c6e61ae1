"""The audit log: one ``audit_events`` row per biometric or payment operation.

Each row says who (the API key id, ``cli`` for an operator command, ``system`` for start-up
work), what (:class:`AuditAction`), on which object (a ``cus_``/``pay_``/``re_``/``kek_``/
``tfk_`` id, a terminal id, or none), the outcome (``ok``, a payment status, an error code of
the catalogue, a count) and when. It never holds a card number, a palm template, a name or
phone digits: every value must be a short identifier (:data:`_SAFE`), and a value with a run of
12 or more digits (anything that could be a card number) is refused, so a careless caller
cannot write one (``tests/payments/test_audit.py`` also scans the table).

The table is append-only like the ledger: there is no update or delete path in the code, and
migration ``0006_audit`` installs triggers that make the database refuse them (retention does
not delete audit rows: they hold no biometric data).

Writes go in their own short transaction after the operation (:meth:`AuditLog.record`), or
inside the caller's (:func:`record`); a failure to write an audit row after an operation that
already committed is logged at ERROR and does not undo it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from palmpay.db import Database, utcnow
from palmpay.payments.errors import PaymentError
from palmpay.payments.models import AuditEvent

__all__ = ["AuditAction", "AuditEntry", "AuditLog", "Outcome", "record"]

log = logging.getLogger(__name__)

#: Allowed shape of every stored value: a short identifier.
_SAFE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_PAN_LIKE = re.compile(r"\d{12,}")


class AuditAction(StrEnum):
    """What was done."""

    ENROLL = "customer.enroll"
    UNENROLL = "customer.unenroll"
    TEMPLATES_PURGED = "customer.templates_purged"
    IDENTIFY = "palm.identify"
    NARROWING_FAILURE = "narrowing.failure"
    NARROWING_LOCKED_OUT = "narrowing.locked_out"
    AUTHORIZE = "payment.authorize"
    CAPTURE = "payment.capture"
    CANCEL = "payment.cancel"
    REFUND = "payment.refund"
    KEY_ROTATE = "keys.rotate"
    TEMPLATES_RENEW = "keys.renew_templates"
    KEY_RETIRE = "keys.retire"
    RETENTION = "retention.apply"


@dataclass(frozen=True)
class AuditEntry:
    """One audit row, read back."""

    id: int
    created_at: datetime
    actor: str
    action: str
    object_id: str | None
    outcome: str


def _safe(value: str, what: str) -> str:
    value = str(value)
    if not _SAFE.fullmatch(value) or _PAN_LIKE.search(value):
        raise ValueError(f"audit {what} must be a short identifier without long digit runs")
    return value


def _object(value: str | None) -> str | None:
    """An object id as given by a caller (a path parameter): kept if it is a short identifier,
    else ``invalid_id`` (so that whatever was typed there is never stored)."""
    if value is None:
        return None
    value = str(value)
    return value if _SAFE.fullmatch(value) and not _PAN_LIKE.search(value) else "invalid_id"


def record(session: Session, actor: str, action: str, object_id: str | None = None,
           outcome: str = "ok", *, at: datetime | None = None) -> None:
    """Append one audit row in the caller's transaction."""
    session.add(AuditEvent(
        created_at=at or utcnow(), actor=_safe(actor, "actor"),
        action=_safe(AuditAction(action), "action"),
        object_id=_object(object_id),
        outcome=_safe(outcome, "outcome"),
    ))


@dataclass
class Outcome:
    """What :meth:`AuditLog.operation` records on success (set ``object_id`` / ``value``)."""

    object_id: str | None
    value: str = "ok"


class AuditLog:
    """Writes and reads ``audit_events`` over a :class:`~palmpay.db.Database`; ``clock`` gives
    the row time (UTC now by default; tests pass a fake clock)."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def record(self, actor: str, action: str, object_id: str | None = None,
               outcome: str = "ok") -> None:
        """Append one row in its own transaction; errors are logged, never raised."""
        try:
            with self.db.session() as s:
                record(s, actor, action, object_id, outcome, at=self.clock())
        except Exception as exc:  # never log the values: a refused one may be a card number
            log.error("could not write the audit event %s (%s)", action, type(exc).__name__)

    @contextmanager
    def operation(self, actor: str, action: str, object_id: str | None = None
                  ) -> Iterator[Outcome]:
        """``with audit.operation(key.id, AuditAction.CAPTURE, payment_id) as op: ...`` records
        ``op.value`` on success, the error code of a :class:`PaymentError` (re-raised), or
        ``error`` for any other exception (re-raised)."""
        outcome = Outcome(object_id)
        try:
            yield outcome
        except PaymentError as err:
            extra = err.extra or {}
            object_id = outcome.object_id or extra.get("payment") or extra.get("customer")
            self.record(actor, action, object_id, err.code)
            raise
        except Exception:
            self.record(actor, action, outcome.object_id, "error")
            raise
        self.record(actor, action, outcome.object_id, outcome.value)

    def events(self, *, object_id: str | None = None, action: str | None = None,
               limit: int = 1000) -> list[AuditEntry]:
        """Rows oldest first, optionally for one object or one action."""
        stmt = select(AuditEvent).order_by(AuditEvent.id).limit(max(1, min(limit, 100_000)))
        if object_id is not None:
            stmt = stmt.where(AuditEvent.object_id == object_id)
        if action is not None:
            stmt = stmt.where(AuditEvent.action == AuditAction(action))
        with self.db.session(readonly=True) as s:
            return [AuditEntry(r.id, r.created_at, r.actor, r.action, r.object_id, r.outcome)
                    for r in s.scalars(stmt)]
