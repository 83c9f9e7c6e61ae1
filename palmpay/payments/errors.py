"""The one exception type of PalmPay, with a stable machine-readable ``code``.

A :class:`PaymentError` says *what* went wrong, never how to answer it over HTTP: the HTTP API
maps each ``code`` to exactly one status, title and ``type`` URI in its catalogue
(:data:`palmpay.api.errors.CATALOGUE`) and answers ``application/problem+json`` with ``detail``
and :attr:`PaymentError.extra` (for instance the id of the failed payment on a decline). The
payments core and the HTTP layer raise the same class. ``detail`` is written for humans and is
safe to show: it never contains a card number, a key or a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PaymentError", "DECLINE_CODES"]

#: Decline codes a :class:`~palmpay.payments.processor.Processor` may return that map to their
#: own error code; any other decline code is raised as ``card_declined`` with the acquirer's code
#: in ``extra["decline_code"]``.
DECLINE_CODES = frozenset({"card_declined", "insufficient_funds", "expired_card"})


class PaymentError(Exception):
    """An operation failed in a way the caller can act on.

    :param code: stable snake_case error type (a key of :data:`palmpay.api.errors.CATALOGUE`).
    :param detail: human text, safe to return to API clients and to log.
    :param extra: extra JSON-safe members for the problem document (e.g. ``{"payment": id}``).
    :param headers: response headers the HTTP layer adds (``WWW-Authenticate`` on
        ``unauthorized``); empty for the payments core.
    """

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def __repr__(self) -> str:
        return f"PaymentError(code={self.code!r}, detail={self.detail!r}, extra={self.extra!r})"
