"""Authorisation intents: no acquirer authorisation without a row that says it may exist.

:meth:`~palmpay.payments.payments.PaymentOperations.authorize` runs in three steps:

1. :func:`record_intent` commits an :class:`~palmpay.payments.models.AuthorizationIntent`
   (payment id, customer, card id and token, amount, currency, capture method, the owning
   instance, the Idempotency-Key claim of the request) in its own transaction;
2. the acquirer is called with the payment id as its idempotency reference (and captures, for
   ``automatic``);
3. :func:`complete` commits the payment row, its ledger entries and the intent's
   ``completed`` state in one transaction.

A crash between 1 and 3 leaves the intent ``open``. :class:`IntentReconciler` settles the open
intents whose owner is dead (:meth:`palmpay.payments.instances.InstanceRegistry.alive`), at
start-up, from the heartbeat thread, and before an orphaned Idempotency-Key claim is recovered:
it asks the acquirer (:meth:`~palmpay.payments.processor.Processor.lookup`) what it holds for
the reference and either *completes* the intent (authorised: the payment row and ledger entries
are created, captured for ``automatic`` if the capture had not happened yet) or *voids* it
(nothing authorised, or the capture failed and the hold was released). No authorisation is left
without a payment row, and the ledger stays consistent.

:data:`CLAIM` carries the id of the Idempotency-Key claim the current request runs under (the
API sets it); the intent records it, and the reconciler sets it again while it creates the
payment so that the API links the payment to that claim in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from palmpay.db import Database, utcnow
from palmpay.payments import ledger
from palmpay.payments.models import AuthorizationIntent, Card, Customer, IntentState, Payment
from palmpay.payments.processor import Processor, ProcessorError
from palmpay.payments.states import CaptureMethod, LedgerKind, PaymentStatus
from palmpay.payments.views import PaymentView

__all__ = ["CLAIM", "IntentReconciler", "ReconcileReport", "complete", "record_intent",
           "void_intent"]

log = logging.getLogger(__name__)

#: The Idempotency-Key claim (``idempotency_keys.id``) the current request runs under, if any.
CLAIM: ContextVar[int | None] = ContextVar("palmpay_idempotency_claim", default=None)


@dataclass(frozen=True)
class ReconcileReport:
    """What one :meth:`IntentReconciler.reconcile` did: intents ``completed`` (a payment row
    created), ``voided``, and ``left_open`` (owner alive, or the acquirer unreachable)."""

    completed: int = 0
    voided: int = 0
    left_open: int = 0


def record_intent(session: Session, payment_id: str, card: Card, amount: int, currency: str,
                  capture_method: str, terminal: str | None, owner_id: str) -> None:
    """Add the ``open`` intent of ``payment_id`` (the caller commits before the acquirer)."""
    now = utcnow()
    session.add(AuthorizationIntent(
        id=payment_id, customer_id=card.customer_id, card_id=card.id, card_token=card.token,
        amount=amount, currency=currency, capture_method=capture_method, terminal=terminal,
        state=IntentState.OPEN, owner_id=owner_id, idempotency_key_id=CLAIM.get(),
        created_at=now, updated_at=now,
    ))  # fmt: skip


def complete(session: Session, intent_id: str, *, auth_code: str | None, captured: int,
             decline_code: str | None = None) -> Payment | None:
    """Create the payment of an open intent, with its ledger entries, and mark the intent
    ``completed``: ``failed`` with ``decline_code``, else authorised with ``auth_code`` and
    ``succeeded`` when ``captured`` (the whole amount) or ``requires_capture``.

    The intent row is locked. An intent completed meanwhile (by a reconciler) returns its
    payment; a voided one returns ``None``.
    """
    intent = session.get(AuthorizationIntent, intent_id, with_for_update=True)
    if intent is None:
        raise LookupError(f"no authorisation intent {intent_id}")
    if intent.state == IntentState.COMPLETED:
        return session.get(Payment, intent_id)
    if intent.state == IntentState.VOIDED:
        return None
    now = utcnow()
    amount = intent.amount
    customer = session.get(Customer, intent.customer_id)
    payment = Payment(
        id=intent.id, customer_id=intent.customer_id, card_id=intent.card_id, amount=amount,
        merchant_id=customer.merchant_id if customer is not None else None,
        currency=intent.currency, capture_method=intent.capture_method,
        terminal=intent.terminal, amount_capturable=0, amount_received=0, amount_refunded=0,
        created_at=now, updated_at=now,
    )  # fmt: skip
    if decline_code is not None:
        payment.status = PaymentStatus.FAILED
        payment.decline_code = decline_code
        session.add(payment)
        session.flush()
        ledger.record(session, payment, LedgerKind.DECLINE, amount)
    else:
        if auth_code is None:
            raise ProcessorError("approved without an authorisation code")
        payment.auth_code = auth_code
        payment.status = PaymentStatus.REQUIRES_CAPTURE
        payment.amount_capturable = amount
        session.add(payment)
        session.flush()
        ledger.record(session, payment, LedgerKind.AUTHORIZATION, amount)
        if captured:
            payment.status = PaymentStatus.SUCCEEDED
            payment.amount_capturable = 0
            payment.amount_received = captured
            ledger.record(session, payment, LedgerKind.CAPTURE, captured)
    intent.state = IntentState.COMPLETED
    intent.updated_at = now
    session.flush()
    return payment


def void_intent(db: Database, intent_id: str) -> None:
    """Mark an open intent ``voided`` (nothing, or nothing any more, held at the acquirer)."""
    with db.session() as s:
        intent = s.get(AuthorizationIntent, intent_id, with_for_update=True)
        if intent is not None and intent.state == IntentState.OPEN:
            intent.state = IntentState.VOIDED
            intent.updated_at = utcnow()


class IntentReconciler:
    """Settles the open intents of dead owners (see the module docstring).

    :param alive: ``alive(owner_id, since)`` — the liveness rule of
        :class:`~palmpay.payments.instances.InstanceRegistry`.
    :param emit: ``emit(event_type, view)`` for each payment created (webhook events).
    """

    def __init__(self, db: Database, processor: Processor,
                 alive: Callable[[str | None, datetime], bool],
                 emit: Callable[[str, PaymentView], None] | None = None) -> None:
        self.db = db
        self.processor = processor
        self.alive = alive
        self.emit = emit

    def reconcile(self, claim_id: int | None = None) -> ReconcileReport:
        """Settle every open intent of a dead owner (only those of ``claim_id`` if given)."""
        stmt = select(AuthorizationIntent.id, AuthorizationIntent.owner_id,
                      AuthorizationIntent.created_at).where(
            AuthorizationIntent.state == IntentState.OPEN)
        if claim_id is not None:
            stmt = stmt.where(AuthorizationIntent.idempotency_key_id == claim_id)
        with self.db.session(readonly=True) as s:
            candidates = s.execute(stmt.order_by(AuthorizationIntent.created_at)).all()
        completed = voided = left = 0
        for intent_id, owner_id, created_at in candidates:
            if self.alive(owner_id, created_at):
                left += 1
                continue
            outcome = self._settle(intent_id)
            completed += outcome == "completed"
            voided += outcome == "voided"
            left += outcome == "open"
        report = ReconcileReport(completed, voided, left)
        if completed or voided:
            log.warning("reconciled authorisation intents of dead owners: %d completed, "
                        "%d voided, %d left open", completed, voided, left)
        return report

    def _settle(self, intent_id: str) -> str:
        lookup = getattr(self.processor, "lookup", None)
        if lookup is None:
            log.error("intent %s is open and the acquirer cannot be asked: reconcile it by hand",
                      intent_id)
            return "open"
        view: PaymentView | None = None
        try:
            with self.db.session() as s:
                intent = s.get(AuthorizationIntent, intent_id, with_for_update=True)
                if intent is None or intent.state != IntentState.OPEN:
                    return "settled"
                record = lookup(intent.id)
                if record is None or record.voided:
                    intent.state = IntentState.VOIDED
                    intent.updated_at = utcnow()
                    log.warning("intent %s: nothing held at the acquirer; voided", intent_id)
                    return "voided"
                captured = record.captured
                if intent.capture_method == CaptureMethod.AUTOMATIC and not captured:
                    try:
                        self.processor.capture(record.auth_code, intent.amount)
                        captured = intent.amount
                    except ProcessorError as exc:
                        log.error("intent %s: capture failed (%s); voiding the hold",
                                  intent_id, exc)
                        self.processor.void(record.auth_code)
                        intent.state = IntentState.VOIDED
                        intent.updated_at = utcnow()
                        return "voided"
                token = CLAIM.set(intent.idempotency_key_id)
                try:
                    payment = complete(s, intent_id, auth_code=record.auth_code,
                                       captured=captured)
                finally:
                    CLAIM.reset(token)
                if payment is not None:
                    view = PaymentView.model_validate(payment)
        except ProcessorError as exc:
            log.error("intent %s: the acquirer failed during reconciliation (%s); left open",
                      intent_id, exc)
            return "open"
        if view is None:
            return "settled"
        log.warning("intent %s: authorised at the acquirer; payment %s %s created",
                    intent_id, view.id, view.status)
        if self.emit is not None:
            self.emit(f"payment.{view.status}", view)
        return "completed"
