"""The append-only ledger of money movements and its consistency check.

Every change of a payment's money appends one or more ``ledger_entries`` rows in the same
transaction as the change itself (amounts positive, in the payment's currency):

============== =========================================================================
kind            written when
============== =========================================================================
authorization   the acquirer approved a hold of ``amount``
decline         the acquirer declined (amount = what was asked; no money moved)
capture         money was taken (≤ authorised)
release         the uncaptured part of a hold was given back (cancel, partial capture)
refund          money was given back (``refund_id`` set)
============== =========================================================================

There is no update or delete path in the code, and the ``0001_core`` migration installs
triggers that make the database refuse them. :func:`check` recomputes every payment's totals from
the entries and compares them with the ``payments`` and ``refunds`` rows: a row edited behind the
service's back, or an entry edited with the triggers disabled, shows up as a problem.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from palmpay.db import utcnow
from palmpay.payments.models import LedgerEntry, Payment, Refund
from palmpay.payments.states import LedgerKind

__all__ = ["LedgerReport", "record", "check", "totals"]

log = logging.getLogger(__name__)

_KINDS = frozenset(LedgerKind)


@dataclass(frozen=True)
class LedgerReport:
    """Result of :func:`check`: ``ok`` when ``problems`` is empty."""

    ok: bool
    payments_checked: int
    problems: list[str] = field(default_factory=list)
    entries_checked: int = 0


def record(
    session: Session,
    payment: Payment,
    kind: str,
    amount: int,
    refund_id: str | None = None,
) -> LedgerEntry:
    """Append one entry for ``payment`` (flushed with the caller's transaction)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    if amount <= 0:
        raise ValueError(f"ledger amounts are positive, got {amount}")
    if (kind == "refund") != (refund_id is not None):
        raise ValueError("refund entries, and only they, carry a refund_id")
    entry = LedgerEntry(
        payment_id=payment.id,
        refund_id=refund_id,
        kind=kind,
        amount=amount,
        currency=payment.currency,
        created_at=utcnow(),
    )
    session.add(entry)
    log.debug("ledger %s %s %d %s", payment.id, kind, amount, payment.currency)
    return entry


def totals(session: Session, payment_id: str) -> dict[str, int]:
    """Sum of entries per kind for one payment (every kind present, 0 when none)."""
    rows = session.execute(
        select(LedgerEntry.kind, func.sum(LedgerEntry.amount))
        .where(LedgerEntry.payment_id == payment_id)
        .group_by(LedgerEntry.kind)
    ).all()
    out = dict.fromkeys(map(str, LedgerKind), 0)
    out.update({kind: int(total) for kind, total in rows})
    return out


def _expect(problems: list[str], pid: str, what: str, actual: int, expected: int) -> None:
    if actual != expected:
        problems.append(f"{pid}: {what} is {actual}, expected {expected}")


def _check_payment(p: Payment, t: dict[str, int], refunds_sum: int) -> list[str]:
    problems: list[str] = []
    pid = p.id
    auth, decl, capt = t["authorization"], t["decline"], t["capture"]
    rel, refd = t["release"], t["refund"]
    # Row vs entries.
    _expect(problems, pid, "amount_received", p.amount_received, capt)
    _expect(problems, pid, "amount_refunded", p.amount_refunded, refd)
    _expect(problems, pid, "amount_capturable", p.amount_capturable, auth - capt - rel)
    _expect(problems, pid, "sum of refunds rows", refunds_sum, refd)
    # Invariants.
    if not refd <= capt <= auth:
        problems.append(f"{pid}: refunded {refd} <= captured {capt} <= authorised {auth} fails")
    if capt + rel > auth:
        problems.append(f"{pid}: captured {capt} + released {rel} exceed authorised {auth}")
    status = p.status
    if status == "failed":
        if auth or capt or rel or refd:
            problems.append(f"{pid}: failed payment has money entries")
        _expect(problems, pid, "declined amount", decl, p.amount)
        if not p.decline_code:
            problems.append(f"{pid}: failed payment without a decline_code")
        return problems
    if decl:
        problems.append(f"{pid}: {status} payment has a decline entry")
    _expect(problems, pid, "authorised total", auth, p.amount)
    if status == "requires_capture":
        if capt or rel or refd:
            problems.append(f"{pid}: requires_capture payment has capture/release/refund entries")
    elif status == "succeeded":
        if capt <= 0:
            problems.append(f"{pid}: succeeded payment has nothing captured")
        _expect(problems, pid, "captured + released", capt + rel, auth)
    elif status == "canceled":
        if capt:
            problems.append(f"{pid}: canceled payment has {capt} captured")
        _expect(problems, pid, "released total", rel, auth)
    else:
        problems.append(f"{pid}: unknown status {status!r}")
    return problems


def check(session: Session) -> LedgerReport:
    """Recompute every payment from the ledger and compare (see the module docstring).

    Checks, per payment: received/refunded/capturable columns equal the entry sums; refunded ≤
    captured ≤ authorised; captured + released ≤ authorised; a failed payment has only its decline
    entry; authorised = amount otherwise; requires_capture has nothing captured/released/refunded;
    succeeded has captured + released = authorised; canceled has nothing captured and everything
    released; the refunds rows sum to the refund entries. Per entry: currency equals the payment's.
    Per refund: exactly one refund entry, of the refund's amount.
    """
    sums: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(map(str, LedgerKind), 0))
    problems: list[str] = []
    entries = 0
    for pid, kind, total, n in session.execute(
        select(
            LedgerEntry.payment_id,
            LedgerEntry.kind,
            func.sum(LedgerEntry.amount),
            func.count(),
        ).group_by(LedgerEntry.payment_id, LedgerEntry.kind)
    ):
        if kind not in _KINDS:
            problems.append(f"{pid}: {n} entries of unknown kind {kind!r}")
            continue
        sums[pid][kind] = int(total)
        entries += int(n)

    refund_sums = {
        pid: int(total)
        for pid, total in session.execute(
            select(Refund.payment_id, func.sum(Refund.amount)).group_by(Refund.payment_id)
        )
    }

    for pid, n in session.execute(
        select(LedgerEntry.payment_id, func.count())
        .join(Payment, Payment.id == LedgerEntry.payment_id)
        .where(LedgerEntry.currency != Payment.currency)
        .group_by(LedgerEntry.payment_id)
    ):
        problems.append(f"{pid}: {n} ledger entries in another currency than the payment")

    refund_entries = {
        rid: (int(n), int(total))
        for rid, n, total in session.execute(
            select(LedgerEntry.refund_id, func.count(), func.sum(LedgerEntry.amount))
            .where(LedgerEntry.refund_id.is_not(None))
            .group_by(LedgerEntry.refund_id)
        )
    }
    for rid, amount in session.execute(select(Refund.id, Refund.amount)):
        n, total = refund_entries.pop(rid, (0, 0))
        if n != 1 or total != amount:
            problems.append(f"{rid}: {n} refund entries totalling {total}, expected 1 of {amount}")
    n_orphans = session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(
            or_(
                and_(LedgerEntry.kind == "refund", LedgerEntry.refund_id.is_(None)),
                and_(LedgerEntry.kind != "refund", LedgerEntry.refund_id.is_not(None)),
            )
        )
    )
    if n_orphans:
        problems.append(f"{n_orphans} ledger entries with refund_id inconsistent with their kind")

    checked = 0
    for payment in session.scalars(select(Payment).order_by(Payment.id)).yield_per(1000):
        checked += 1
        if payment.id not in sums:
            problems.append(f"{payment.id}: no ledger entries")
        problems.extend(
            _check_payment(payment, sums[payment.id], refund_sums.get(payment.id, 0))
        )
    report = LedgerReport(
        ok=not problems, payments_checked=checked, problems=problems, entries_checked=entries
    )
    if report.ok:
        log.info("ledger check ok: %d payments, %d entries", checked, entries)
    else:
        log.warning("ledger check found %d problems in %d payments", len(problems), checked)
    return report
