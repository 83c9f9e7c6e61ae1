"""Payments: authorise (and capture at once, or later), capture, cancel, refund, read.

Part of :class:`~palmpay.payments.service.PaymentService` (see that module for the payment
lifecycle, events and concurrency).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from palmpay.db import new_id, utcnow
from palmpay.payments import faults, intents, ledger
from palmpay.payments.core import ServiceCore
from palmpay.payments.errors import DECLINE_CODES, PaymentError
from palmpay.payments.instances import InstanceRegistry
from palmpay.payments.ledger import LedgerReport
from palmpay.payments.merchants import owned_by
from palmpay.payments.models import Payment, Refund
from palmpay.payments.processor import ProcessorError
from palmpay.payments.states import CaptureMethod, LedgerKind, PaymentStatus, RefundStatus
from palmpay.payments.validation import (
    check_amount,
    check_capture_method,
    check_currency,
    check_terminal,
)
from palmpay.payments.views import PaymentView, RefundView

__all__ = ["PaymentOperations", "decline_error"]

log = logging.getLogger(__name__)

#: Owner id of intents made outside a registered API instance (command line, tests).
_PROCESS_OWNER = new_id("ins")

_DECLINE_DETAIL = {
    "card_declined": "the card was declined",
    "insufficient_funds": "insufficient funds on the card",
    "expired_card": "the card has expired",
}


def _unexpected_state(payment: Payment, action: str, hint: str = "") -> PaymentError:
    detail = f"payment {payment.id} is {payment.status}; cannot {action}"
    return PaymentError(
        "payment_unexpected_state",
        detail + (f" ({hint})" if hint else ""),
        extra={"payment": payment.id, "payment_status": payment.status},
    )


def _auth_code(payment: Payment) -> str:
    """The acquirer's authorisation code (every authorised payment has one)."""
    if payment.auth_code is None:
        raise _unexpected_state(payment, "reach the acquirer", "it was never authorised")
    return payment.auth_code


def _acquirer_failed(payment_id: str, action: str, exc: ProcessorError) -> PaymentError:
    log.error("acquirer error %s %s: %s", action, payment_id, exc)
    return PaymentError("processor_error", f"the acquirer failed to {action}",
                        extra={"payment": payment_id})


def decline_error(payment_id: str, decline: str) -> PaymentError:
    """The error a declined payment answers with (also rebuilt when a crashed request's
    declined payment is replayed)."""
    code = decline if decline in DECLINE_CODES else "card_declined"
    return PaymentError(code, _DECLINE_DETAIL[code],
                        extra={"payment": payment_id, "decline_code": decline})


class PaymentOperations(ServiceCore):
    """Authorisation, capture, cancellation and refunds of payments.

    ``instances``: the API process's :class:`~palmpay.payments.instances.InstanceRegistry`
    (set by the API at start-up): the owner recorded on authorisation intents and the liveness
    rule of their reconciliation.
    """

    instances: InstanceRegistry | None = None

    def _check_amount(self, amount: int | None) -> int | None:
        return None if amount is None else check_amount(amount, self.max_amount)

    def _undo_at_acquirer(self, auth_code: str, captured: int) -> bool:
        """Best effort after a transaction that talked to the acquirer failed to commit;
        whether the undo succeeded."""
        try:
            if captured:
                self.processor.refund(auth_code, captured)
            else:
                self.processor.void(auth_code)
            log.error("transaction failed after acquirer call; %s %s at the acquirer",
                      "refunded" if captured else "voided", auth_code)
            return True
        except Exception:
            log.exception("transaction failed after acquirer call AND undoing %s failed: "
                          "reconcile with the acquirer", auth_code)
            return False

    @property
    def owner_id(self) -> str:
        """The instance id recorded on intents: the API's registered instance, else this
        process's unregistered one."""
        return self.instances.id if self.instances is not None else _PROCESS_OWNER

    def reconciler(self) -> intents.IntentReconciler:
        """Settles the open intents of dead owners (needs :attr:`instances` for liveness)."""
        instances = self.instances

        def alive(owner_id: str | None, since: datetime) -> bool:
            if instances is None:
                return owner_id == _PROCESS_OWNER
            return instances.alive(owner_id, since)

        return intents.IntentReconciler(self.db, self.processor, alive, self._emit)

    def _abandon(self, payment_id: str, auth_code: str | None, captured: int) -> None:
        """After a failure between the intent and the payment commit: undo the acquirer side
        and void the intent. If the undo fails the intent stays open for reconciliation."""
        if auth_code is not None and not self._undo_at_acquirer(auth_code, captured):
            return
        try:
            intents.void_intent(self.db, payment_id)
        except Exception:
            log.exception("could not void intent %s; reconciliation will", payment_id)

    def authorize(
        self,
        customer_id: str,
        amount: int,
        currency: str,
        capture_method: str = CaptureMethod.AUTOMATIC,
        terminal: str | None = None,
        merchant_id: str | None = None,
    ) -> PaymentView:
        """Charge a customer's card: authorise, and for ``capture_method="automatic"`` capture
        at once (→ ``succeeded``); ``"manual"`` leaves it ``requires_capture``.

        Crash-safe (:mod:`palmpay.payments.intents`): an authorisation intent is committed
        before the acquirer is called with the payment id as its idempotency reference, and the
        payment row, ledger entries and the intent's completion are committed together after.

        Validation errors: ``invalid_amount``, ``amount_too_large``, ``invalid_currency``,
        ``invalid_request`` (capture method, terminal), ``customer_not_found`` (also for a
        customer of another merchant than ``merchant_id``, when given), ``customer_deleted``.
        A decline stores a ``failed`` payment (with a ``decline`` ledger entry), emits
        ``payment.failed`` and raises the decline code (``card_declined``,
        ``insufficient_funds``, ``expired_card``) with ``extra={"payment": id,
        "decline_code": ...}``. ``processor_error`` when the acquirer fails; nothing is
        charged then (the intent is voided).
        """
        amount = check_amount(amount, self.max_amount)
        currency = check_currency(currency)
        method = check_capture_method(capture_method)
        terminal = check_terminal(terminal)
        payment_id = new_id("pay")
        with self.db.session() as s:
            customer = self._active_customer(s, customer_id)
            if merchant_id is not None and not owned_by(customer.merchant_id, merchant_id):
                raise PaymentError("customer_not_found", f"no customer {customer_id}",
                                   extra={"customer": customer_id})
            card = self._card_of(customer)
            intents.record_intent(s, payment_id, card, amount, currency, method, terminal,
                                  self.owner_id)
        faults.reached("payment.after_intent")
        auth_code: str | None = None
        captured = 0
        try:
            with self.vault.reveal(card) as pan:
                result = self.processor.authorize(pan, card.exp_month, card.exp_year, amount,
                                                  currency, reference=payment_id)
            decline = None if result.approved else (result.decline_code or "card_declined")
            if result.approved:
                auth_code = result.auth_code
                if auth_code is None:
                    raise ProcessorError("approved without an authorisation code")
                if method == CaptureMethod.AUTOMATIC:
                    self.processor.capture(auth_code, amount)
                    captured = amount
            faults.reached("payment.after_acquirer")
            with self.db.session() as s:
                payment = intents.complete(s, payment_id, auth_code=auth_code,
                                           captured=captured, decline_code=decline)
                if payment is None:  # voided by a reconciler that took us for dead
                    raise ProcessorError(f"intent {payment_id} was voided meanwhile")
                view = PaymentView.model_validate(payment)
        except ProcessorError as exc:
            self._abandon(payment_id, auth_code, captured)
            log.error("acquirer error on payment %s for %s: %s", payment_id, customer_id, exc)
            raise PaymentError("processor_error", "the acquirer failed; nothing was charged",
                               extra={"customer": customer_id}) from None
        except BaseException:
            self._abandon(payment_id, auth_code, captured)
            raise
        faults.reached("payment.after_commit")

        if view.status == PaymentStatus.FAILED:
            decline = view.decline_code or "card_declined"
            log.info("payment %s declined (%s): %d %s", payment_id, decline, amount, currency)
            self._emit("payment.failed", view)
            raise decline_error(payment_id, decline)
        log.info("payment %s %s: %d %s", payment_id, view.status, amount, currency)
        self._emit(f"payment.{view.status}", view)
        return view

    def capture(self, payment_id: str, amount: int | None = None) -> PaymentView:
        """Capture a ``requires_capture`` payment, fully (``amount=None``) or partially (the
        rest is released; a payment is captured once). → ``succeeded``.

        ``payment_unexpected_state`` from any other status; ``amount_too_large`` above
        ``amount_capturable``; ``invalid_amount``.
        """
        amount = self._check_amount(amount)
        with self.db.session() as s:
            payment = self._payment(s, payment_id, lock=True)
            if payment.status != PaymentStatus.REQUIRES_CAPTURE:
                raise _unexpected_state(payment, "capture", "only requires_capture can be captured")
            take = payment.amount_capturable if amount is None else amount
            if take > payment.amount_capturable:
                raise PaymentError(
                    "amount_too_large",
                    f"capture of {take} exceeds the capturable {payment.amount_capturable}",
                    extra={"payment": payment_id},
                )
            rest = payment.amount_capturable - take
            try:
                self.processor.capture(_auth_code(payment), take)
            except ProcessorError as exc:
                raise _acquirer_failed(payment_id, "capture", exc) from None
            ledger.record(s, payment, LedgerKind.CAPTURE, take)
            if rest:
                ledger.record(s, payment, LedgerKind.RELEASE, rest)
            payment.amount_received += take
            payment.amount_capturable = 0
            payment.status = PaymentStatus.SUCCEEDED
            payment.updated_at = utcnow()
            s.flush()
            view = PaymentView.model_validate(payment)
        log.info(
            "payment %s captured %d %s (released %d)", payment_id, take, payment.currency, rest
        )
        self._emit("payment.succeeded", view)
        return view

    def cancel(self, payment_id: str) -> PaymentView:
        """Void a ``requires_capture`` payment (→ ``canceled``, the hold released);
        ``payment_unexpected_state`` from any other status."""
        with self.db.session() as s:
            payment = self._payment(s, payment_id, lock=True)
            if payment.status != PaymentStatus.REQUIRES_CAPTURE:
                hint = "refund it instead" if payment.status == PaymentStatus.SUCCEEDED else ""
                raise _unexpected_state(payment, "cancel", hint)
            try:
                self.processor.void(_auth_code(payment))
            except ProcessorError as exc:
                raise _acquirer_failed(payment_id, "void", exc) from None
            ledger.record(s, payment, LedgerKind.RELEASE, payment.amount_capturable)
            payment.amount_capturable = 0
            payment.status = PaymentStatus.CANCELED
            payment.updated_at = utcnow()
            s.flush()
            view = PaymentView.model_validate(payment)
        log.info("payment %s canceled", payment_id)
        self._emit("payment.canceled", view)
        return view

    def refund(self, payment_id: str, amount: int | None = None) -> RefundView:
        """Refund (part of) a ``succeeded`` payment; ``amount=None`` refunds what is left.

        ``amount_too_large`` when the refunds would exceed the captured amount (including when
        nothing is left); ``payment_unexpected_state`` for a payment not captured
        (requires_capture: cancel it instead; canceled; failed).
        """
        amount = self._check_amount(amount)
        with self.db.session() as s:
            payment = self._payment(s, payment_id, lock=True)
            if payment.status != PaymentStatus.SUCCEEDED:
                hint = ("cancel it instead" if payment.status == PaymentStatus.REQUIRES_CAPTURE
                        else "")
                raise _unexpected_state(payment, "refund", hint)
            left = payment.amount_received - payment.amount_refunded
            give = left if amount is None else amount
            if give <= 0 or give > left:
                raise PaymentError(
                    "amount_too_large",
                    f"refund of {give} exceeds what is left to refund ({left} of "
                    f"{payment.amount_received} captured)",
                    extra={"payment": payment_id, "refundable": left},
                )
            try:
                self.processor.refund(_auth_code(payment), give)
            except ProcessorError as exc:
                raise _acquirer_failed(payment_id, "refund", exc) from None
            refund = Refund(id=new_id("re"), payment_id=payment_id, amount=give,
                            currency=payment.currency, status=RefundStatus.SUCCEEDED,
                            created_at=utcnow())
            s.add(refund)
            s.flush()
            ledger.record(s, payment, LedgerKind.REFUND, give, refund_id=refund.id)
            payment.amount_refunded += give
            payment.updated_at = utcnow()
            s.flush()
            view = RefundView.model_validate(refund)
            merchant = payment.merchant_id
        log.info("refund %s of payment %s: %d %s", view.id, payment_id, give, view.currency)
        self._emit("refund.created", view, merchant)
        return view

    def get_payment(self, payment_id: str) -> PaymentView:
        """The payment; ``payment_not_found``."""
        with self.db.session(readonly=True) as s:
            return PaymentView.model_validate(self._payment(s, payment_id))

    def list_payments(self, customer_id: str | None = None, limit: int = 100) -> list[PaymentView]:
        """Newest first, optionally one customer's; at most ``limit`` (1..1000)."""
        limit = max(1, min(int(limit), 1000))
        with self.db.session(readonly=True) as s:
            stmt = select(Payment).options(selectinload(Payment.card))
            if customer_id is not None:
                stmt = stmt.where(Payment.customer_id == customer_id)
            stmt = stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit)
            return [PaymentView.model_validate(p) for p in s.scalars(stmt)]

    def get_refund(self, refund_id: str) -> RefundView:
        """The refund; ``refund_not_found``."""
        with self.db.session(readonly=True) as s:
            refund = s.get(Refund, refund_id)
            if refund is None:
                raise PaymentError("refund_not_found", f"no refund {refund_id}",
                                   extra={"refund": refund_id})
            return RefundView.model_validate(refund)

    def list_refunds(self, payment_id: str) -> list[RefundView]:
        """A payment's refunds, oldest first; ``payment_not_found``."""
        with self.db.session(readonly=True) as s:
            self._payment(s, payment_id)
            rows = s.scalars(
                select(Refund).where(Refund.payment_id == payment_id)
                .order_by(Refund.created_at, Refund.id)
            )
            return [RefundView.model_validate(r) for r in rows]

    def check_ledger(self) -> LedgerReport:
        """:func:`palmpay.payments.ledger.check` over the whole database."""
        with self.db.session(readonly=True) as s:
            return ledger.check(s)
