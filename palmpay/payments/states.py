"""The statuses and kinds of the payments tables, each defined once as a :class:`~enum.StrEnum`.

The database ``CHECK`` constraints (:mod:`palmpay.payments.models`), the API views
(:mod:`palmpay.payments.views`) and the payment lifecycle all use these enums; their values are
the strings stored in the database, so ``PaymentStatus.SUCCEEDED == "succeeded"``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CaptureMethod",
    "CardStatus",
    "CustomerStatus",
    "LedgerKind",
    "PaymentStatus",
    "RefundStatus",
]


class CustomerStatus(StrEnum):
    """An enrolled customer is ``active`` until unenrolled (``deleted``)."""

    ACTIVE = "active"
    DELETED = "deleted"


class CardStatus(StrEnum):
    """A card is ``active`` until its customer is unenrolled (``revoked``: number destroyed)."""

    ACTIVE = "active"
    REVOKED = "revoked"


class PaymentStatus(StrEnum):
    """Where a payment is in its lifecycle (:mod:`palmpay.payments.service`)."""

    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"


class CaptureMethod(StrEnum):
    """``automatic`` captures at authorisation; ``manual`` waits for a capture call."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"


class RefundStatus(StrEnum):
    """Refunds are synchronous: a stored refund has succeeded."""

    SUCCEEDED = "succeeded"


class LedgerKind(StrEnum):
    """What one append-only ledger entry records (:mod:`palmpay.payments.ledger`)."""

    AUTHORIZATION = "authorization"
    DECLINE = "decline"
    CAPTURE = "capture"
    RELEASE = "release"
    REFUND = "refund"
