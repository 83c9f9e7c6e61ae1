"""ORM classes of the payments tables (created by migration ``0001_core``).

Ids are prefixed random strings (``cus_``, ``card_``, ``tpl_``, ``pay_``, ``re_`` + 24
alphanumerics, :func:`palmpay.db.new_id`); the card token is ``tok_`` + 24 alphanumerics and
is not derived from the card number. Amounts are integers in the currency's minor unit.
Timestamps are timezone-aware UTC (:class:`palmpay.db.UTCDateTime`). Statuses and kinds are
the :mod:`palmpay.payments.states` enums, which also write the ``CHECK`` constraints.

Encrypted records (:class:`Card` while active, :class:`PalmTemplate`) carry the vault envelope:
``kek_id``, ``wrapped_dek``, ``nonce``, ``ciphertext`` (see :mod:`palmpay.payments.vault`).
A revoked card keeps brand, last4, expiry and fingerprint (for the payment history and
duplicate checks) but its envelope columns are NULL: the card number is gone for good.

``ledger_entries`` is append-only: the code never updates or deletes it, and triggers in the
migration make the database refuse it too.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    func,
    select,
    text,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from palmpay.db import Base, BigIntId, UTCDateTime, check_in, new_id, utcnow
from palmpay.payments.states import (
    CaptureMethod,
    CardStatus,
    CustomerStatus,
    LedgerKind,
    PaymentStatus,
    RefundStatus,
)

__all__ = [
    "Merchant",
    "Customer",
    "Card",
    "PalmTemplate",
    "Payment",
    "Refund",
    "LedgerEntry",
    "AuditEvent",
    "AuthorizationIntent",
    "ServiceInstance",
    "IntentState",
    "new_token",
]


def new_token() -> str:
    """A card token: ``tok_`` + 24 random alphanumerics (nothing to do with the card number)."""
    return new_id("tok")


class Merchant(Base):
    """A tenant (migration ``0005_tenancy``): it owns API keys, customers, cards and payments;
    an API key sees only its merchant's (:mod:`palmpay.payments.merchants`)."""

    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PalmTemplate(Base):
    __tablename__ = "palm_templates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: Template key of the cancelable transform the template is under (migration
    #: ``0006_audit``; NULL: stored in clear before it). :mod:`palmpay.payments.cancelable`.
    transform_id: Mapped[str | None] = mapped_column(String(64))


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (CheckConstraint(check_in("status", CustomerStatus), name="status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    consent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: HMAC of the last 4 digits of the shopper's phone (narrows a search past N_safe).
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    #: When the retention policy deleted the palm templates (``palmpay retention apply``): the
    #: customer can no longer pay by palm until enrolled again.
    templates_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The merchant that enrolled the customer (NULL only in the schema: visible to no key).
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    #: Stored palm templates, counted by the database when first read (not loaded with the row,
    #: so a ``SELECT ... FOR UPDATE`` of the customer stays a plain row lock).
    template_count: Mapped[int] = column_property(
        select(func.count(PalmTemplate.id))
        .where(PalmTemplate.customer_id == id)
        .correlate_except(PalmTemplate)
        .scalar_subquery(),
        deferred=True,
    )
    #: The customer's cards, the one in use first: active before revoked, then newest.
    cards: Mapped[list[Card]] = relationship(
        viewonly=True,
        order_by="[(Card.status == 'active').desc(), Card.created_at.desc(), Card.id]",
    )

    @property
    def card(self) -> Card | None:
        """The card payments use (every customer is created with one)."""
        return self.cards[0] if self.cards else None


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (
        CheckConstraint(check_in("status", CardStatus), name="status"),
        CheckConstraint(
            "(status = 'active' AND kek_id IS NOT NULL AND wrapped_dek IS NOT NULL "
            "AND nonce IS NOT NULL AND ciphertext IS NOT NULL) OR "
            "(status = 'revoked' AND kek_id IS NULL AND wrapped_dek IS NULL "
            "AND nonce IS NULL AND ciphertext IS NULL)",
            name="envelope",
        ),
        # At most one active card per card number (fingerprint) among a merchant's customers.
        Index(
            "uq_cards_active_fingerprint",
            "merchant_id",
            "fingerprint",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token: Mapped[str] = mapped_column(String(40), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(SmallInteger)
    exp_year: Mapped[int] = mapped_column(SmallInteger)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    kek_id: Mapped[str | None] = mapped_column(String(64))
    wrapped_dek: Mapped[bytes | None] = mapped_column(LargeBinary)
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The customer's merchant.
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(check_in("status", PaymentStatus), name="status"),
        CheckConstraint(check_in("capture_method", CaptureMethod), name="capture_method"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "amount_capturable >= 0 AND amount_received >= 0 AND amount_refunded >= 0",
            name="amounts_nonnegative",
        ),
        CheckConstraint(
            "amount_refunded <= amount_received AND amount_received + amount_capturable <= amount",
            name="amounts_bounded",
        ),
        Index("ix_payments_customer_created", "customer_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    card_id: Mapped[str] = mapped_column(ForeignKey("cards.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    capture_method: Mapped[str] = mapped_column(String(12))
    amount_capturable: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_received: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    auth_code: Mapped[str | None] = mapped_column(String(64))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    terminal: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: The customer's merchant (a terminal of another merchant never sees the payment).
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    card: Mapped[Card] = relationship(viewonly=True)


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(check_in("status", RefundStatus), name="status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="succeeded")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(check_in("kind", LedgerKind), name="kind"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    refund_id: Mapped[str | None] = mapped_column(ForeignKey("refunds.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IntentState(StrEnum):
    """An authorisation intent is ``open`` from before the acquirer call until its payment row
    is committed (``completed``) or nothing is left at the acquirer (``voided``)."""

    OPEN = "open"
    COMPLETED = "completed"
    VOIDED = "voided"


class AuthorizationIntent(Base):
    """An acquirer authorisation about to be made, committed before the call (created by
    migration ``0004_intents``; :mod:`palmpay.payments.intents`). ``id`` is the payment id the
    authorisation will get, also the acquirer's idempotency reference; ``owner_id`` the
    :class:`ServiceInstance` making it; ``idempotency_key_id`` the API claim it ran under."""

    __tablename__ = "authorization_intents"
    __table_args__ = (
        CheckConstraint(check_in("state", IntentState), name="state"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    card_id: Mapped[str] = mapped_column(ForeignKey("cards.id"))
    card_token: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    capture_method: Mapped[str] = mapped_column(String(12))
    terminal: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    owner_id: Mapped[str] = mapped_column(String(40))
    idempotency_key_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ServiceInstance(Base):
    """One running API process (``palmpay.payments.instances``): a random id per start, its
    host and pid, and a lease it renews while alive; ``stopped_at`` after a clean shutdown."""

    __tablename__ = "service_instances"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """One biometric or payment operation (migration ``0006_audit``; append-only, like the
    ledger): who (API key id, ``cli`` or ``system``), what, on which object, the outcome, when.
    Never a card number, a template, a name or phone digits (:mod:`palmpay.payments.audit`)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(40))
