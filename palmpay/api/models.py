"""ORM classes of the API's tables (created by migration ``0002_api``).

- ``api_keys``: who may call the API. Only the SHA-256 of a secret is stored (secrets are 190
  random bits, so a fast hash is enough: there is nothing to brute-force); ``prefix`` (the first
  characters of the secret) lets an operator recognise a key in a list.
- ``idempotency_keys``: one row per (API key, ``Idempotency-Key``): the request's hash, its
  state (``in_progress`` while it runs, ``done`` with the stored response) and when it expires.
- ``events``: what happened (``payment.succeeded``, ...), the payload webhooks deliver.
- ``webhook_endpoints`` / ``webhook_deliveries``: where events go, and one delivery row per
  (event, endpoint) with its attempts, next attempt time and outcome.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from palmpay.db import Base, BigIntId, UTCDateTime, check_in, utcnow
from palmpay.payments.merchants import DEFAULT_MERCHANT_ID
from palmpay.payments.models import Merchant  # noqa: F401 - api_keys.merchant_id refers to it

__all__ = [
    "ApiKey",
    "IdempotencyKey",
    "Event",
    "WebhookEndpoint",
    "WebhookDelivery",
    "TerminalLockout",
    "RateLimitCounter",
    "ApiKeyScope",
    "IdempotencyState",
    "DeliveryState",
]


class ApiKeyScope(StrEnum):
    """What an API key may do: kiosks enroll, terminals take payments, admins do everything."""

    KIOSK = "kiosk"
    TERMINAL = "terminal"
    ADMIN = "admin"


class IdempotencyState(StrEnum):
    """An ``Idempotency-Key`` is ``in_progress`` while its request runs, then ``done``."""

    IN_PROGRESS = "in_progress"
    DONE = "done"


class DeliveryState(StrEnum):
    """A webhook delivery is ``pending`` until ``delivered`` or given up (``failed``)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(check_in("scope", ApiKeyScope), name="scope"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(24))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The merchant whose customers and payments the key sees (``0005_tenancy``); a key
    #: without one does not authenticate.
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("api_key_id", "key"),
        CheckConstraint(check_in("state", IdempotencyState), name="state"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="in_progress")
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_content_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    #: Crash recovery (migration ``0004_intents``): the instance running the request and its
    #: pid, and the object the request created, linked in the object's own transaction.
    owner_id: Mapped[str | None] = mapped_column(String(40))
    owner_pid: Mapped[int | None] = mapped_column(BigInteger)
    result_type: Mapped[str | None] = mapped_column(String(16))
    result_id: Mapped[str | None] = mapped_column(String(40))


class Event(Base):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    #: The merchant that owns the event's object; only its endpoints receive it.
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: The merchant whose events the endpoint receives (``0005_tenancy``).
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True,
                                                    default=DEFAULT_MERCHANT_ID)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        CheckConstraint(check_in("state", DeliveryState), name="state"),
        Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TerminalLockout(Base):
    """Wrong phone-digit tries of one terminal in a row (``palmpay/api/narrowing.py``)."""

    __tablename__ = "terminal_lockouts"

    terminal_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RateLimitCounter(Base):
    """One fixed-window counter of :mod:`palmpay.api.ratelimit` (``0005_tenancy``): hits in
    the window that ends at ``expires_at``."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
