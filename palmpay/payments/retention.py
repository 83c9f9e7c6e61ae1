"""The biometric retention policy (GDPR Art. 5(1)(e) storage limitation, BIPA §15(a)): palm
templates of customers inactive for ``PALMPAY_RETENTION_MONTHS`` (36) months are deleted.

*Activity* is the latest of: the enrollment (``customers.created_at``), any later template
enrollment (``palm_templates.created_at``: re-enrolment, extra samples) and any successful
payment (``payments.created_at`` of a payment that is ``succeeded`` or ``requires_capture``:
the acquirer approved it). A customer whose latest activity is older than the cutoff (``now``
minus that many calendar months) loses every palm template; ``customers.templates_purged_at``
is set and a ``customer.templates_purged`` audit event written in the same transaction, and
the customer can no longer pay by palm (the checkout refuses a customer without templates;
running servers drop them from their index through the change log,
:mod:`palmpay.payments.changes`). The card and the payment history stay (the shopper can
enroll their palm again, or unenroll).

Run by ``palmpay retention apply`` (``--dry-run`` lists without deleting), and at API start-up
when ``PALMPAY_RETENTION_ON_START=true``. ``now`` is a parameter so tests use a clock.
"""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from palmpay.db import Database
from palmpay.payments.audit import AuditAction, record
from palmpay.payments.changes import ChangeKind, record_change
from palmpay.payments.models import Customer, PalmTemplate, Payment
from palmpay.payments.states import CustomerStatus, PaymentStatus

__all__ = ["RetentionReport", "apply_retention", "inactive_customers", "months_before"]

log = logging.getLogger(__name__)

_SUCCESSFUL = (PaymentStatus.SUCCEEDED, PaymentStatus.REQUIRES_CAPTURE)


@dataclass(frozen=True)
class RetentionReport:
    """What :func:`apply_retention` did (or, with ``dry_run``, would do)."""

    cutoff: datetime
    customers: tuple[str, ...]
    templates_deleted: int
    dry_run: bool = False


def months_before(now: datetime, months: int) -> datetime:
    """``now`` minus ``months`` calendar months (the day clamped to the month's length)."""
    index = now.year * 12 + (now.month - 1) - months
    year, month = divmod(index, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def inactive_customers(db: Database, cutoff: datetime) -> list[str]:
    """Active customers that still have palm templates and no activity since ``cutoff``."""
    recent_template = exists().where(PalmTemplate.customer_id == Customer.id,
                                     PalmTemplate.created_at >= cutoff)
    recent_payment = exists().where(Payment.customer_id == Customer.id,
                                    Payment.status.in_(_SUCCESSFUL),
                                    Payment.created_at >= cutoff)
    has_templates = exists().where(PalmTemplate.customer_id == Customer.id)
    with db.session(readonly=True) as s:
        return list(s.scalars(
            select(Customer.id)
            .where(Customer.status == CustomerStatus.ACTIVE, Customer.created_at < cutoff,
                   has_templates, ~recent_template, ~recent_payment)
            .order_by(Customer.id)))


def apply_retention(db: Database, now: datetime, months: int, *, actor: str = "cli",
                    dry_run: bool = False) -> RetentionReport:
    """Delete the palm templates of every customer inactive since ``months`` before ``now``.

    One transaction per customer: the customer row is locked and its inactivity checked again
    inside it (a payment that lands meanwhile keeps the templates), then the templates are
    deleted, ``templates_purged_at`` set and the audit event written. A closing
    ``retention.apply`` event records how many customers were purged.
    """
    cutoff = months_before(now, months)
    candidates = inactive_customers(db, cutoff)
    if dry_run:
        return RetentionReport(cutoff, tuple(candidates), 0, dry_run=True)
    purged: list[str] = []
    deleted = 0
    for customer_id in candidates:
        with db.session() as s:
            customer = s.get(Customer, customer_id, with_for_update=True)
            if customer is None or customer.status != CustomerStatus.ACTIVE:
                continue
            if _active_since(s, customer_id, cutoff):
                continue
            result = s.execute(delete(PalmTemplate).where(
                PalmTemplate.customer_id == customer_id))
            count = int(getattr(result, "rowcount", 0) or 0)
            customer.templates_purged_at = now
            record(s, actor, AuditAction.TEMPLATES_PURGED, customer_id, "ok", at=now)
            record_change(s, customer_id, ChangeKind.PURGE)
        purged.append(customer_id)
        deleted += count
        log.info("retention: deleted %d palm templates of customer %s (inactive since before "
                 "%s)", count, customer_id, cutoff.date())
    with db.session() as s:
        record(s, actor, AuditAction.RETENTION, None, f"purged_{len(purged)}", at=now)
    log.info("retention (%d months, cutoff %s): %d customers, %d templates deleted", months,
             cutoff.date(), len(purged), deleted)
    return RetentionReport(cutoff, tuple(purged), deleted)


def _active_since(session: Session, customer_id: str, cutoff: datetime) -> bool:
    """Whether the customer enrolled templates or paid since ``cutoff`` (inside the lock)."""
    return bool(session.scalar(select(
        exists().where(PalmTemplate.customer_id == customer_id,
                       PalmTemplate.created_at >= cutoff)
        | exists().where(Payment.customer_id == customer_id, Payment.status.in_(_SUCCESSFUL),
                         Payment.created_at >= cutoff))))
