"""The palm change log: one row per change of the enrolled palms, for the API's index replicas.

Every transaction that changes which palm templates an active customer has (an enrollment,
templates added, an unenrollment, a retention purge) calls :func:`record_change` before it
commits: the row ``palm_changes(seq, customer_id, kind, created_at)`` commits or rolls back
with the change itself. ``seq`` is a 64-bit auto-increment (``BIGSERIAL`` on PostgreSQL, the
rowid on SQLite) and the log is append-only (the code never updates or deletes it). Each API
process (:mod:`palmpay.api.replica`) applies the rows past the position its index reflects.

Commit order. An auto-increment is not commit-ordered across concurrent transactions: T1 may
take seq 5, T2 seq 6, T2 commit, a replica read "up to 6" and T1 commit 5 afterwards, which a
reader asking for ``seq > 6`` would never see. So :func:`record_change` takes a transaction
advisory lock (``pg_advisory_xact_lock(CHANGE_LOCK)``) *before* it draws the sequence value
and holds it until the commit: seq values are handed out in commit order, and a reader that
sees seq N committed has every smaller one committed or rolled back for good (a rollback
leaves a gap, which is harmless). PostgreSQL releases the lock after the commit is visible.
The lock serialises only the last statement of those transactions (the insert of the row, then
the commit), after their row locks and uniqueness checks, so it cannot deadlock with them. On
SQLite every read-write transaction already runs alone (``BEGIN IMMEDIATE``,
:mod:`palmpay.db`).

Notification. On PostgreSQL the same transaction runs ``pg_notify('palm_changes', '<seq>')``,
which PostgreSQL delivers to every ``LISTEN palm_changes`` session when (and only if) it
commits. The channel is per database, not per schema: a notification is a hint to catch up,
never the change itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, String, func, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from palmpay.db import Base, BigIntId, UTCDateTime, check_in, utcnow

__all__ = [
    "CHANNEL",
    "CHANGE_LOCK",
    "Change",
    "ChangeKind",
    "PalmChange",
    "changes_after",
    "head",
    "record_change",
]

log = logging.getLogger(__name__)

#: The ``LISTEN``/``NOTIFY`` channel (payload: the change's seq, as text).
CHANNEL = "palm_changes"
#: ``pg_advisory_xact_lock`` key making seq values commit-ordered ("PalmChn" in hex).
CHANGE_LOCK = 0x50616C6D43686E


class ChangeKind(StrEnum):
    """What happened to a customer's palms."""

    ENROLL = "enroll"  # a new customer with templates
    TEMPLATES = "templates"  # more templates for an active customer
    DELETE = "delete"  # unenrolled: templates deleted
    PURGE = "purge"  # retention deleted the templates (palmpay.payments.retention)


class PalmChange(Base):
    """One row of the change log (migration ``0007_palm_changes``)."""

    __tablename__ = "palm_changes"
    __table_args__ = (CheckConstraint(check_in("kind", ChangeKind), name="kind"),)

    seq: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


@dataclass(frozen=True)
class Change:
    """A committed change, as a replica reads it."""

    seq: int
    customer_id: str
    kind: ChangeKind
    created_at: datetime


_RECORD_PG = text(
    "WITH lock AS (SELECT pg_advisory_xact_lock(:key)), "
    "ins AS (INSERT INTO palm_changes (customer_id, kind, created_at) "
    "SELECT :customer_id, :kind, :created_at FROM lock RETURNING seq) "
    "SELECT seq, pg_notify(:channel, seq::text) FROM ins")


def record_change(session: Session, customer_id: str, kind: ChangeKind) -> int:
    """Append a change in ``session``'s transaction (call it last, just before the commit);
    returns its seq. On PostgreSQL: takes :data:`CHANGE_LOCK` first and notifies
    :data:`CHANNEL` (delivered on commit)."""
    if session.get_bind().dialect.name == "postgresql":
        # One round trip: the lock (the CTE the insert reads its row from, so it is held
        # before nextval draws the seq), the insert and the notification.
        seq = int(session.execute(_RECORD_PG, {
            "key": CHANGE_LOCK, "customer_id": customer_id, "kind": str(kind),
            "created_at": utcnow(), "channel": CHANNEL}).scalar_one())
    else:
        row = PalmChange(customer_id=customer_id, kind=str(kind), created_at=utcnow())
        session.add(row)
        session.flush()
        seq = row.seq
    log.debug("palm change %d: %s %s", seq, kind, customer_id)
    return seq


def head(session: Session) -> int:
    """The seq of the newest committed change (0 when the log is empty)."""
    return int(session.scalar(select(func.coalesce(func.max(PalmChange.seq), 0))) or 0)


def changes_after(session: Session, position: int, limit: int) -> list[Change]:
    """At most ``limit`` committed changes with ``seq > position``, in seq order."""
    rows = session.execute(
        select(PalmChange.seq, PalmChange.customer_id, PalmChange.kind, PalmChange.created_at)
        .where(PalmChange.seq > position).order_by(PalmChange.seq).limit(limit)).all()
    return [Change(int(seq), customer, ChangeKind(kind), at) for seq, customer, kind, at in rows]
