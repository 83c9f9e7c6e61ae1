"""The payment service: enrol and unenrol customers, authorise/capture/cancel/refund payments.

This is the interface the HTTP API (``palmpay/api``) codes against. Every method runs in its own
database transaction and returns frozen views (never ORM rows); failures the caller can act on
are :class:`~palmpay.payments.errors.PaymentError` with a stable ``code`` and HTTP ``status``.

Payment lifecycle (``status``)::

    authorize(capture_method="automatic") ─approved─▶ succeeded ─refund()*─▶ succeeded
    authorize(capture_method="manual")    ─approved─▶ requires_capture
                                                       ├─ capture(amount ≤ authorised) ─▶ succeeded
                                                       └─ cancel() ────────────────────▶ canceled
    authorize(...) ──declined──▶ failed  (and PaymentError 402 card_declined|insufficient_funds|
                                          expired_card with extra={"payment": id})

Any other transition raises ``payment_unexpected_state`` (409). Capture happens at most once
(a partial capture releases the rest). Refunds may be partial and repeated; their sum never
exceeds the captured amount (``amount_too_large``). A refunded payment keeps status
``succeeded`` with ``amount_refunded`` set.

Concurrency: every state change re-reads its payment (or customer) row locked — ``SELECT ...
FOR UPDATE`` on PostgreSQL; on SQLite the transaction starts with ``BEGIN IMMEDIATE``, so
writers run one at a time (see :mod:`palmpay.db`) — and checks the amounts inside that lock, so
two captures or refunds racing on one payment cannot over-capture or over-refund. The acquirer is
called inside the transaction; if the transaction then fails to commit, the service undoes the
acquirer side (void or refund) and logs it.

Events: ``on_event(type, object)`` is called after the commit with one of ``customer.created``,
``customer.deleted``, ``payment.succeeded``, ``payment.requires_capture``, ``payment.canceled``,
``payment.failed``, ``refund.created``; ``object`` is the view's :meth:`to_dict` (JSON-ready:
ISO 8601 timestamps, an ``"object"`` member naming the type). An exception raised by
``on_event`` is logged, never propagated (the change is already committed).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from palmpay.config import Settings, get_settings
from palmpay.db import Database, open_database, utcnow
from palmpay.payments import ledger
from palmpay.payments.cards import CardInput
from palmpay.payments.errors import DECLINE_CODES, PaymentError
from palmpay.payments.keys import load_keyring
from palmpay.payments.ledger import LedgerReport
from palmpay.payments.models import (
    CAPTURE_METHODS,
    Card,
    Customer,
    PalmTemplate,
    Payment,
    Refund,
    new_id,
)
from palmpay.payments.processor import Processor, ProcessorError, SimulatedAcquirer
from palmpay.payments.vault import CardVault

__all__ = [
    "CardView",
    "CustomerView",
    "PaymentView",
    "RefundView",
    "TemplateRecord",
    "PaymentService",
    "build_service",
    "CURRENCIES",
    "MAX_TEMPLATES",
    "EventHandler",
]

log = logging.getLogger(__name__)

#: Accepted ISO 4217 currencies (lowercase). Amounts are always in the currency's minor unit
#: (cents; for zero-decimal currencies such as jpy and krw, the unit itself).
CURRENCIES = frozenset(
    {
        "eur", "usd", "gbp", "jpy", "inr", "chf", "cad", "aud", "nzd", "sek", "nok", "dkk",
        "pln", "czk", "huf", "sgd", "hkd", "krw", "cny", "brl", "mxn", "zar",
    }
)  # fmt: skip
#: Most templates one enrolment (or one :meth:`PaymentService.add_templates`) may carry.
MAX_TEMPLATES = 50
_MAX_NAME = 200
_MAX_TERMINAL = 64
#: Templates decrypted per database round trip by :meth:`PaymentService.templates`.
_TEMPLATE_PAGE = 256

EventHandler = Callable[[str, dict], None]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class CardView:
    """A stored card as shown to clients: token, brand, last four digits, expiry, status."""

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    status: str  # active | revoked

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "card",
            "token": self.token,
            "brand": self.brand,
            "last4": self.last4,
            "exp_month": self.exp_month,
            "exp_year": self.exp_year,
            "status": self.status,
        }


@dataclass(frozen=True)
class CustomerView:
    """An enrolled (``active``) or unenrolled (``deleted``) customer; ``templates`` counts the
    stored palm templates (0 once deleted)."""

    id: str
    name: str
    status: str  # active | deleted
    card: CardView
    templates: int
    consent_at: datetime
    created_at: datetime
    deleted_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "customer",
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "card": self.card.to_dict(),
            "templates": self.templates,
            "consent_at": _iso(self.consent_at),
            "created_at": _iso(self.created_at),
            "deleted_at": _iso(self.deleted_at),
        }


@dataclass(frozen=True)
class PaymentView:
    """A payment. ``amount`` is what was authorised (or asked, when failed);
    ``amount_capturable`` what a manual capture may still take; ``amount_received`` what was
    captured; ``amount_refunded`` what was given back. ``customer`` is the customer id."""

    id: str
    status: str  # requires_capture | succeeded | canceled | failed
    amount: int
    currency: str
    capture_method: str  # automatic | manual
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    customer: str
    card: CardView
    decline_code: str | None
    terminal: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "payment",
            "id": self.id,
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "capture_method": self.capture_method,
            "amount_capturable": self.amount_capturable,
            "amount_received": self.amount_received,
            "amount_refunded": self.amount_refunded,
            "customer": self.customer,
            "card": self.card.to_dict(),
            "decline_code": self.decline_code,
            "terminal": self.terminal,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class RefundView:
    """A refund of (part of) a payment's captured amount; ``payment`` is the payment id."""

    id: str
    payment: str
    amount: int
    currency: str
    status: str  # succeeded
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "refund",
            "id": self.id,
            "payment": self.payment,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True, eq=False)
class TemplateRecord:
    """One decrypted palm template of an active customer (for rebuilding the index)."""

    customer_id: str
    vector: np.ndarray = field(repr=False)
    code: np.ndarray = field(repr=False)


def _card_view(card: Card) -> CardView:
    return CardView(card.token, card.brand, card.last4, card.exp_month, card.exp_year, card.status)


def _payment_view(payment: Payment, card: Card) -> PaymentView:
    return PaymentView(
        id=payment.id,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        capture_method=payment.capture_method,
        amount_capturable=payment.amount_capturable,
        amount_received=payment.amount_received,
        amount_refunded=payment.amount_refunded,
        customer=payment.customer_id,
        card=_card_view(card),
        decline_code=payment.decline_code,
        terminal=payment.terminal,
        created_at=payment.created_at,
    )


def _refund_view(refund: Refund) -> RefundView:
    return RefundView(
        refund.id, refund.payment_id, refund.amount, refund.currency, refund.status,
        refund.created_at,
    )  # fmt: skip


def _unexpected_state(payment: Payment, action: str, hint: str = "") -> PaymentError:
    detail = f"payment {payment.id} is {payment.status}; cannot {action}"
    return PaymentError(
        "payment_unexpected_state",
        detail + (f" ({hint})" if hint else ""),
        extra={"payment": payment.id, "payment_status": payment.status},
    )


class PaymentService:
    """Customers, cards and payments over a :class:`~palmpay.db.Database`.

    Args:
        db: the database (migrated: see :func:`palmpay.db.upgrade`).
        vault: encrypts card numbers and palm templates.
        processor: the acquirer (:class:`~palmpay.payments.processor.SimulatedAcquirer` in the
            demo and tests).
        on_event: called after each commit with ``(type, object_dict)`` (module docstring).
        max_amount: largest amount one payment may authorise, in minor units
            (``PALMPAY_MAX_PAYMENT_AMOUNT``); above it ``amount_too_large``.
    """

    def __init__(
        self,
        db: Database,
        vault: CardVault,
        processor: Processor,
        on_event: EventHandler | None = None,
        *,
        max_amount: int = 99_999_999,
    ) -> None:
        self.db = db
        self.vault = vault
        self.processor = processor
        self.on_event = on_event
        self.max_amount = max_amount

    # -- helpers ----------------------------------------------------------------------------

    def _emit(self, event_type: str, obj: Any) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event_type, obj.to_dict())
        except Exception:
            log.exception("on_event handler failed for %s (change already committed)", event_type)

    def _check_amount(self, amount: Any, what: str = "amount") -> int:
        if isinstance(amount, bool):
            raise PaymentError("invalid_amount", f"{what} must be an integer in minor units")
        try:
            value = operator.index(amount)
        except TypeError:
            raise PaymentError(
                "invalid_amount", f"{what} must be an integer in minor units"
            ) from None
        if value <= 0:
            raise PaymentError("invalid_amount", f"{what} must be positive, got {value}")
        if value > self.max_amount:
            raise PaymentError(
                "amount_too_large", f"{what} {value} exceeds the maximum of {self.max_amount}"
            )
        return value

    @staticmethod
    def _check_currency(currency: Any) -> str:
        if not isinstance(currency, str) or currency.lower() not in CURRENCIES:
            raise PaymentError(
                "invalid_currency",
                f"currency must be one of {', '.join(sorted(CURRENCIES))} (ISO 4217, lowercase)",
            )
        return currency.lower()

    @staticmethod
    def _check_templates(
        templates: Sequence[tuple[np.ndarray, np.ndarray]],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        if not isinstance(templates, Sequence) or not templates:
            raise PaymentError("invalid_template", "at least one palm template is required")
        if len(templates) > MAX_TEMPLATES:
            raise PaymentError("invalid_template", f"at most {MAX_TEMPLATES} templates at once")
        out: list[tuple[np.ndarray, np.ndarray]] = []
        shapes: set[tuple[int, int]] = set()
        for i, item in enumerate(templates):
            try:
                if hasattr(item, "vector") and hasattr(item, "code"):  # palmpay.embed.Template
                    vector, code = item.vector, item.code
                else:
                    vector, code = item
            except (TypeError, ValueError):
                raise PaymentError(
                    "invalid_template", f"template {i}: expected (vector, code)"
                ) from None
            vector = np.asarray(vector)
            code = np.asarray(code)
            if vector.ndim != 1 or not np.issubdtype(vector.dtype, np.floating) or not vector.size:
                raise PaymentError("invalid_template", f"template {i}: vector must be 1-D float")
            if code.ndim != 1 or code.dtype != np.uint8 or not code.size:
                raise PaymentError("invalid_template", f"template {i}: code must be 1-D uint8")
            vector = vector.astype(np.float32)
            if not np.isfinite(vector).all():
                raise PaymentError("invalid_template", f"template {i}: vector is not finite")
            shapes.add((vector.size, code.size))
            out.append((vector, code))
        if len(shapes) > 1:
            raise PaymentError("invalid_template", "templates differ in vector or code length")
        return out

    @staticmethod
    def _customer(session: Session, customer_id: str, *, lock: bool = False) -> Customer:
        customer = session.get(Customer, customer_id, with_for_update=lock or None)
        if customer is None:
            raise PaymentError(
                "customer_not_found", f"no customer {customer_id}", extra={"customer": customer_id}
            )
        return customer

    @staticmethod
    def _card_of(session: Session, customer_id: str) -> Card:
        card = session.scalars(
            select(Card)
            .where(Card.customer_id == customer_id)
            .order_by((Card.status == "active").desc(), Card.created_at.desc(), Card.id)
            .limit(1)
        ).first()
        if card is None:  # every customer is created with a card
            raise PaymentError("card_unavailable", f"customer {customer_id} has no card")
        return card

    def _customer_view(self, session: Session, customer: Customer) -> CustomerView:
        count = session.scalar(
            select(func.count()).select_from(PalmTemplate).where(
                PalmTemplate.customer_id == customer.id
            )
        )
        return CustomerView(
            id=customer.id,
            name=customer.name,
            status=customer.status,
            card=_card_view(self._card_of(session, customer.id)),
            templates=int(count or 0),
            consent_at=customer.consent_at,
            created_at=customer.created_at,
            deleted_at=customer.deleted_at,
        )

    @staticmethod
    def _payment(session: Session, payment_id: str, *, lock: bool = False) -> Payment:
        payment = session.get(Payment, payment_id, with_for_update=lock or None)
        if payment is None:
            raise PaymentError(
                "payment_not_found", f"no payment {payment_id}", extra={"payment": payment_id}
            )
        return payment

    def _add_templates(
        self, session: Session, customer_id: str, templates: list[tuple[np.ndarray, np.ndarray]]
    ) -> None:
        now = utcnow()
        for vector, code in templates:
            template_id = new_id("tpl")
            env = self.vault.seal_template(template_id, vector, code)
            session.add(
                PalmTemplate(
                    id=template_id,
                    customer_id=customer_id,
                    kek_id=env.kek_id,
                    wrapped_dek=env.wrapped_dek,
                    nonce=env.nonce,
                    ciphertext=env.ciphertext,
                    created_at=now,
                )
            )

    def _undo_at_acquirer(self, auth_code: str, captured: int) -> None:
        """Best effort after a transaction that talked to the acquirer failed to commit."""
        try:
            if captured:
                self.processor.refund(auth_code, captured)
            else:
                self.processor.void(auth_code)
            log.error("transaction failed after acquirer call; %s %s at the acquirer",
                      "refunded" if captured else "voided", auth_code)
        except Exception:
            log.exception("transaction failed after acquirer call AND undoing %s failed: "
                          "reconcile with the acquirer", auth_code)

    # -- customers --------------------------------------------------------------------------

    def create_customer(
        self,
        name: str,
        card: CardInput,
        templates: Sequence[tuple[np.ndarray, np.ndarray]],
        consent: bool,
    ) -> CustomerView:
        """Enrol a customer: card tokenised into the vault, palm templates encrypted.

        ``templates``: ``(vector float32 (D,), code uint8 (B,))`` pairs (or
        :class:`palmpay.embed.Template` objects), 1 to :data:`MAX_TEMPLATES`, all the same sizes.

        Raises ``consent_required`` unless ``consent is True`` (biometric consent, recorded as
        ``consent_at``); ``invalid_request`` for an empty/overlong name; ``invalid_template``;
        ``invalid_card`` / ``expired_card``; ``duplicate_card`` (409) when the same card number is
        active on another customer (enforced by a unique index, so also under races).
        """
        if consent is not True:
            raise PaymentError("consent_required", "explicit consent to store palm templates "
                               "is required to enrol")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > _MAX_NAME:
            raise PaymentError("invalid_request", f"name must be 1 to {_MAX_NAME} characters")
        name = name.strip()
        checked = self._check_templates(templates)
        stored = self.vault.tokenize(card)
        now = utcnow()
        customer_id = new_id("cus")
        try:
            with self.db.session() as s:
                if self._fingerprint_active(s, stored.fingerprint):
                    raise self._duplicate_card()
                s.add(Customer(id=customer_id, name=name, status="active", consent_at=now,
                               created_at=now))
                s.flush()
                s.add(Card(
                    id=new_id("card"),
                    token=stored.token,
                    customer_id=customer_id,
                    brand=stored.brand,
                    last4=stored.last4,
                    exp_month=stored.exp_month,
                    exp_year=stored.exp_year,
                    fingerprint=stored.fingerprint,
                    status="active",
                    kek_id=stored.envelope.kek_id,
                    wrapped_dek=stored.envelope.wrapped_dek,
                    nonce=stored.envelope.nonce,
                    ciphertext=stored.envelope.ciphertext,
                    created_at=now,
                ))  # fmt: skip
                self._add_templates(s, customer_id, checked)
                s.flush()
                view = self._customer_view(s, s.get(Customer, customer_id))
        except IntegrityError:
            with self.db.session(readonly=True) as s:
                duplicate = self._fingerprint_active(s, stored.fingerprint)
            if duplicate:
                raise self._duplicate_card() from None
            raise
        log.info("enrolled customer %s (%s card %s, %d templates)", customer_id, stored.brand,
                 stored.token, len(checked))
        self._emit("customer.created", view)
        return view

    @staticmethod
    def _fingerprint_active(session: Session, fingerprint: str) -> bool:
        return session.scalar(
            select(func.count()).select_from(Card).where(
                Card.fingerprint == fingerprint, Card.status == "active"
            )
        ) > 0

    @staticmethod
    def _duplicate_card() -> PaymentError:
        return PaymentError("duplicate_card", "this card is already enrolled by another customer")

    def get_customer(self, customer_id: str) -> CustomerView:
        """The customer, active or deleted; ``customer_not_found`` if it never existed."""
        with self.db.session(readonly=True) as s:
            return self._customer_view(s, self._customer(s, customer_id))

    def add_templates(
        self, customer_id: str, templates: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> CustomerView:
        """Store more palm templates for an active customer (re-enrolment, extra samples)."""
        checked = self._check_templates(templates)
        with self.db.session() as s:
            customer = self._customer(s, customer_id, lock=True)
            if customer.status != "active":
                raise PaymentError("customer_deleted", f"customer {customer_id} is deleted",
                                   extra={"customer": customer_id})
            self._add_templates(s, customer_id, checked)
            s.flush()
            return self._customer_view(s, customer)

    def delete_customer(self, customer_id: str) -> CustomerView:
        """Unenrol: delete the palm templates, revoke the card token and destroy its encrypted
        card number (the row keeps brand/last4/expiry/fingerprint for the payment history).
        Payments and refunds are kept; uncaptured payments can still be captured or canceled
        (they need the authorisation code, not the card).

        Not idempotent: deleting a deleted customer raises ``customer_deleted`` (409), so the
        ``customer.deleted`` event fires exactly once. ``customer_not_found`` if it never existed.
        """
        now = utcnow()
        with self.db.session() as s:
            customer = self._customer(s, customer_id, lock=True)
            if customer.status == "deleted":
                raise PaymentError("customer_deleted", f"customer {customer_id} is already deleted",
                                   extra={"customer": customer_id})
            removed = s.execute(
                delete(PalmTemplate).where(PalmTemplate.customer_id == customer_id)
            ).rowcount
            for card in s.scalars(
                select(Card).where(Card.customer_id == customer_id, Card.status == "active")
            ):
                card.status = "revoked"
                card.revoked_at = now
                card.kek_id = card.wrapped_dek = card.nonce = card.ciphertext = None
            customer.status = "deleted"
            customer.deleted_at = now
            s.flush()
            view = self._customer_view(s, customer)
        log.info("unenrolled customer %s: %d templates deleted, card revoked", customer_id, removed)
        self._emit("customer.deleted", view)
        return view

    def templates(self) -> Iterator[TemplateRecord]:
        """Every palm template of every active customer, decrypted (for rebuilding the search
        index at start-up). Read page by page in short transactions, ordered by template id."""
        last = ""
        while True:
            with self.db.session(readonly=True) as s:
                rows = s.scalars(
                    select(PalmTemplate)
                    .join(Customer, Customer.id == PalmTemplate.customer_id)
                    .where(Customer.status == "active", PalmTemplate.id > last)
                    .order_by(PalmTemplate.id)
                    .limit(_TEMPLATE_PAGE)
                ).all()
            if not rows:
                return
            for row in rows:
                vector, code = self.vault.open_template(row)
                yield TemplateRecord(row.customer_id, vector, code)
            last = rows[-1].id

    # -- payments ---------------------------------------------------------------------------

    def authorize(
        self,
        customer_id: str,
        amount: int,
        currency: str,
        capture_method: str = "automatic",
        terminal: str | None = None,
    ) -> PaymentView:
        """Charge a customer's card: authorise, and for ``capture_method="automatic"`` capture
        at once (→ ``succeeded``); ``"manual"`` leaves it ``requires_capture``.

        Validation errors: ``invalid_amount``, ``amount_too_large``, ``invalid_currency``,
        ``invalid_request`` (capture method, terminal), ``customer_not_found``,
        ``customer_deleted``. A decline stores a ``failed`` payment (with a ``decline`` ledger
        entry), emits ``payment.failed`` and raises ``PaymentError`` 402 with the decline code
        (``card_declined``, ``insufficient_funds``, ``expired_card``) and
        ``extra={"payment": id, "decline_code": ...}``. ``processor_error`` (502) when the
        acquirer fails; nothing is stored then.
        """
        amount = self._check_amount(amount)
        currency = self._check_currency(currency)
        if capture_method not in CAPTURE_METHODS:
            raise PaymentError("invalid_request", "capture_method must be automatic or manual")
        if terminal is not None and (
            not isinstance(terminal, str) or len(terminal) > _MAX_TERMINAL
        ):
            raise PaymentError("invalid_request", f"terminal must be at most {_MAX_TERMINAL} chars")
        payment_id = new_id("pay")
        auth_code: str | None = None
        captured = 0
        committed = False
        decline: str | None = None
        try:
            with self.db.session() as s:
                customer = self._customer(s, customer_id, lock=True)
                if customer.status != "active":
                    raise PaymentError("customer_deleted", f"customer {customer_id} is deleted",
                                       extra={"customer": customer_id})
                card = self._card_of(s, customer_id)
                with self.vault.reveal(card) as pan:
                    result = self.processor.authorize(
                        pan, card.exp_month, card.exp_year, amount, currency
                    )
                now = utcnow()
                payment = Payment(
                    id=payment_id, customer_id=customer_id, card_id=card.id, amount=amount,
                    currency=currency, capture_method=capture_method, terminal=terminal,
                    amount_capturable=0, amount_received=0, amount_refunded=0,
                    created_at=now, updated_at=now,
                )  # fmt: skip
                if not result.approved:
                    decline = result.decline_code or "card_declined"
                    payment.status = "failed"
                    payment.decline_code = decline
                    s.add(payment)
                    s.flush()
                    ledger.record(s, payment, "decline", amount)
                else:
                    auth_code = result.auth_code
                    payment.status = "requires_capture"
                    payment.auth_code = auth_code
                    payment.amount_capturable = amount
                    s.add(payment)
                    s.flush()
                    ledger.record(s, payment, "authorization", amount)
                    if capture_method == "automatic":
                        self.processor.capture(auth_code, amount)
                        captured = amount
                        payment.status = "succeeded"
                        payment.amount_capturable = 0
                        payment.amount_received = amount
                        ledger.record(s, payment, "capture", amount)
                s.flush()
                view = _payment_view(payment, card)
            committed = True
        except ProcessorError as exc:
            if auth_code and not committed:
                self._undo_at_acquirer(auth_code, captured)
            log.error("acquirer error on payment %s for %s: %s", payment_id, customer_id, exc)
            raise PaymentError("processor_error", "the acquirer failed; nothing was charged",
                               extra={"customer": customer_id}) from None
        except BaseException:
            if auth_code and not committed:
                self._undo_at_acquirer(auth_code, captured)
            raise

        if decline is not None:
            log.info("payment %s declined (%s): %d %s", payment_id, decline, amount, currency)
            self._emit("payment.failed", view)
            code = decline if decline in DECLINE_CODES else "card_declined"
            raise PaymentError(
                code,
                "the card was declined" if code == "card_declined" else
                {"insufficient_funds": "insufficient funds on the card",
                 "expired_card": "the card has expired"}[code],
                status=402,
                extra={"payment": payment_id, "decline_code": decline},
            )  # fmt: skip
        log.info("payment %s %s: %d %s", payment_id, view.status, amount, currency)
        self._emit(f"payment.{view.status}", view)
        return view

    def capture(self, payment_id: str, amount: int | None = None) -> PaymentView:
        """Capture a ``requires_capture`` payment, fully (``amount=None``) or partially (the
        rest is released; a payment is captured once). → ``succeeded``.

        ``payment_unexpected_state`` from any other status; ``amount_too_large`` above
        ``amount_capturable``; ``invalid_amount``.
        """
        if amount is not None:
            amount = self._check_amount(amount)
        with self.db.session() as s:
            payment = self._payment(s, payment_id, lock=True)
            if payment.status != "requires_capture":
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
                self.processor.capture(payment.auth_code, take)
            except ProcessorError as exc:
                log.error("acquirer error capturing %s: %s", payment_id, exc)
                raise PaymentError("processor_error", "the acquirer failed to capture",
                                   extra={"payment": payment_id}) from None
            ledger.record(s, payment, "capture", take)
            if rest:
                ledger.record(s, payment, "release", rest)
            payment.amount_received += take
            payment.amount_capturable = 0
            payment.status = "succeeded"
            payment.updated_at = utcnow()
            s.flush()
            view = _payment_view(payment, s.get(Card, payment.card_id))
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
            if payment.status != "requires_capture":
                hint = "refund it instead" if payment.status == "succeeded" else ""
                raise _unexpected_state(payment, "cancel", hint)
            try:
                self.processor.void(payment.auth_code)
            except ProcessorError as exc:
                log.error("acquirer error voiding %s: %s", payment_id, exc)
                raise PaymentError("processor_error", "the acquirer failed to void",
                                   extra={"payment": payment_id}) from None
            ledger.record(s, payment, "release", payment.amount_capturable)
            payment.amount_capturable = 0
            payment.status = "canceled"
            payment.updated_at = utcnow()
            s.flush()
            view = _payment_view(payment, s.get(Card, payment.card_id))
        log.info("payment %s canceled", payment_id)
        self._emit("payment.canceled", view)
        return view

    def refund(self, payment_id: str, amount: int | None = None) -> RefundView:
        """Refund (part of) a ``succeeded`` payment; ``amount=None`` refunds what is left.

        ``amount_too_large`` when the refunds would exceed the captured amount (including when
        nothing is left); ``payment_unexpected_state`` for a payment not captured
        (requires_capture: cancel it instead; canceled; failed).
        """
        if amount is not None:
            amount = self._check_amount(amount)
        with self.db.session() as s:
            payment = self._payment(s, payment_id, lock=True)
            if payment.status != "succeeded":
                hint = "cancel it instead" if payment.status == "requires_capture" else ""
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
                self.processor.refund(payment.auth_code, give)
            except ProcessorError as exc:
                log.error("acquirer error refunding %s: %s", payment_id, exc)
                raise PaymentError("processor_error", "the acquirer failed to refund",
                                   extra={"payment": payment_id}) from None
            refund = Refund(id=new_id("re"), payment_id=payment_id, amount=give,
                            currency=payment.currency, status="succeeded", created_at=utcnow())
            s.add(refund)
            s.flush()
            ledger.record(s, payment, "refund", give, refund_id=refund.id)
            payment.amount_refunded += give
            payment.updated_at = utcnow()
            s.flush()
            view = _refund_view(refund)
        log.info("refund %s of payment %s: %d %s", view.id, payment_id, give, view.currency)
        self._emit("refund.created", view)
        return view

    def get_payment(self, payment_id: str) -> PaymentView:
        """The payment; ``payment_not_found``."""
        with self.db.session(readonly=True) as s:
            payment = self._payment(s, payment_id)
            return _payment_view(payment, s.get(Card, payment.card_id))

    def list_payments(self, customer_id: str | None = None, limit: int = 100) -> list[PaymentView]:
        """Newest first, optionally one customer's; at most ``limit`` (1..1000)."""
        limit = max(1, min(int(limit), 1000))
        with self.db.session(readonly=True) as s:
            stmt = select(Payment, Card).join(Card, Card.id == Payment.card_id)
            if customer_id is not None:
                stmt = stmt.where(Payment.customer_id == customer_id)
            stmt = stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit)
            return [_payment_view(p, c) for p, c in s.execute(stmt)]

    def get_refund(self, refund_id: str) -> RefundView:
        """The refund; ``refund_not_found``."""
        with self.db.session(readonly=True) as s:
            refund = s.get(Refund, refund_id)
            if refund is None:
                raise PaymentError("refund_not_found", f"no refund {refund_id}",
                                   extra={"refund": refund_id})
            return _refund_view(refund)

    def list_refunds(self, payment_id: str) -> list[RefundView]:
        """A payment's refunds, oldest first; ``payment_not_found``."""
        with self.db.session(readonly=True) as s:
            self._payment(s, payment_id)
            rows = s.scalars(
                select(Refund).where(Refund.payment_id == payment_id)
                .order_by(Refund.created_at, Refund.id)
            )
            return [_refund_view(r) for r in rows]

    def check_ledger(self) -> LedgerReport:
        """:func:`palmpay.payments.ledger.check` over the whole database."""
        with self.db.session(readonly=True) as s:
            return ledger.check(s)


def build_service(
    settings: Settings | None = None,
    *,
    on_event: EventHandler | None = None,
    processor: Processor | None = None,
) -> PaymentService:
    """The service from settings: keyring loaded first (fails fast with a clear
    :class:`~palmpay.payments.keys.KeyringError` when none is configured), then the engine
    (``PALMPAY_DATABASE_URL`` or SQLite under ``PALMPAY_DATA_DIR``), migrations to head, the vault
    (reloading the keyring after a rotation) and, unless ``processor`` is given, a
    :class:`SimulatedAcquirer` with ``PALMPAY_SIM_CARD_LIMIT``."""
    settings = settings or get_settings()
    keyring = load_keyring(settings)
    db = open_database(settings.resolved_database_url())
    vault = CardVault(keyring, keyring_loader=lambda: load_keyring(settings))
    if processor is None:
        processor = SimulatedAcquirer(card_limit=settings.sim_card_limit)
    return PaymentService(db, vault, processor, on_event, max_amount=settings.max_payment_amount)
