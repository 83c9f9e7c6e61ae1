"""The one exception type of the payments core, with a stable machine-readable ``code``.

The HTTP API turns a :class:`PaymentError` into ``application/problem+json``: ``type`` from
:attr:`PaymentError.code`, the HTTP status from :attr:`PaymentError.status`, ``detail`` from
:attr:`PaymentError.detail`, plus :attr:`PaymentError.extra` (for instance the id of the failed
payment on a decline). ``detail`` is written for humans and is safe to show: it never contains a
card number, a key or a template.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PaymentError", "ERROR_STATUS", "DECLINE_CODES"]

#: Every code the payments core raises, with the HTTP status the API should answer with.
#:
#: - 402: the card was refused by the acquirer (the request was valid).
#: - 404: the object does not exist.
#: - 409: the object exists but is in a state that forbids the operation, or the request
#:   conflicts with another object (a card already enrolled).
#: - 422: a value in the request is invalid.
#: - 502: the acquirer failed (not a decline).
ERROR_STATUS: dict[str, int] = {
    # request values
    "invalid_request": 422,
    "invalid_card": 422,
    "expired_card": 422,  # at enrolment; a stored card that expired declines with 402
    "invalid_amount": 422,
    "invalid_currency": 422,
    "invalid_template": 422,
    "amount_too_large": 422,
    "consent_required": 422,
    # declines (the acquirer said no)
    "card_declined": 402,
    "insufficient_funds": 402,
    # missing objects
    "customer_not_found": 404,
    "payment_not_found": 404,
    "refund_not_found": 404,
    "palm_not_found": 404,
    # state conflicts
    "payment_unexpected_state": 409,
    "duplicate_card": 409,
    "customer_deleted": 409,
    "card_unavailable": 409,
    # acquirer failure
    "processor_error": 502,
}

#: Decline codes a :class:`~palmpay.payments.processor.Processor` may return that map to their
#: own error code; any other decline code is raised as ``card_declined`` with the acquirer's code
#: in ``extra["decline_code"]``.
DECLINE_CODES = frozenset({"card_declined", "insufficient_funds", "expired_card"})


class PaymentError(Exception):
    """A payments operation failed in a way the caller can act on.

    Attributes:
        code: stable snake_case error type (a key of :data:`ERROR_STATUS`).
        detail: human text, safe to return to API clients and to log.
        status: HTTP status for the API (defaults from :data:`ERROR_STATUS`).
        extra: extra JSON-safe members for the problem document (e.g. ``{"payment": id}``).
    """

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if status is None:
            if code not in ERROR_STATUS:
                raise ValueError(f"unknown payment error code {code!r}: give a status")
            status = ERROR_STATUS[code]
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status
        self.extra: dict[str, Any] = dict(extra or {})

    def __repr__(self) -> str:
        return (
            f"PaymentError(code={self.code!r}, status={self.status}, detail={self.detail!r}, "
            f"extra={self.extra!r})"
        )
