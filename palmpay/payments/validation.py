"""Checks of the values the payment service is given: amounts, currencies, names, terminals and
palm templates. Each returns the normalised value or raises
:class:`~palmpay.payments.errors.PaymentError` with a request-value code (``invalid_amount``,
``amount_too_large``, ``invalid_currency``, ``invalid_request``, ``invalid_template``).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from palmpay.embed import Template
from palmpay.payments.errors import PaymentError
from palmpay.payments.states import CaptureMethod

__all__ = [
    "CURRENCIES",
    "MAX_NAME",
    "MAX_TEMPLATES",
    "MAX_TERMINAL",
    "check_amount",
    "check_capture_method",
    "check_currency",
    "check_name",
    "check_phone_last4",
    "check_templates",
    "check_terminal",
]

#: Accepted ISO 4217 currencies (lowercase). Amounts are always in the currency's minor unit
#: (cents; for zero-decimal currencies such as jpy and krw, the unit itself).
CURRENCIES = frozenset(
    {
        "eur", "usd", "gbp", "jpy", "inr", "chf", "cad", "aud", "nzd", "sek", "nok", "dkk",
        "pln", "czk", "huf", "sgd", "hkd", "krw", "cny", "brl", "mxn", "zar",
    }
)  # fmt: skip
#: Most templates one enrolment (or one ``add_templates``) may carry.
MAX_TEMPLATES = 50
#: Longest customer name, in characters (after stripping).
MAX_NAME = 200
#: Longest terminal id a payment records.
MAX_TERMINAL = 64


def check_phone_last4(value: Any) -> str:
    """Exactly 4 ASCII digits (the last 4 of a phone number), or ``invalid_request``."""
    if not isinstance(value, str) or len(value) != 4 or not all("0" <= c <= "9" for c in value):
        raise PaymentError("invalid_request", "phone_last4 must be exactly 4 digits",
                           extra={"field": "phone_last4"})
    return value


def check_amount(amount: Any, maximum: int, what: str = "amount") -> int:
    """A positive integer amount in minor units, at most ``maximum``."""
    if isinstance(amount, bool):
        raise PaymentError("invalid_amount", f"{what} must be an integer in minor units")
    try:
        value = operator.index(amount)
    except TypeError:
        raise PaymentError("invalid_amount", f"{what} must be an integer in minor units") from None
    if value <= 0:
        raise PaymentError("invalid_amount", f"{what} must be positive, got {value}")
    if value > maximum:
        raise PaymentError("amount_too_large", f"{what} {value} exceeds the maximum of {maximum}")
    return value


def check_currency(currency: Any) -> str:
    """The lowercase ISO 4217 code, one of :data:`CURRENCIES`."""
    if not isinstance(currency, str) or currency.lower() not in CURRENCIES:
        raise PaymentError(
            "invalid_currency",
            f"currency must be one of {', '.join(sorted(CURRENCIES))} (ISO 4217, lowercase)",
        )
    return currency.lower()


def check_capture_method(capture_method: Any) -> CaptureMethod:
    """``automatic`` or ``manual``."""
    if capture_method not in frozenset(CaptureMethod):
        raise PaymentError("invalid_request", "capture_method must be automatic or manual")
    return CaptureMethod(capture_method)


def check_terminal(terminal: Any) -> str | None:
    """``None`` or a terminal id of at most :data:`MAX_TERMINAL` characters."""
    if terminal is not None and (not isinstance(terminal, str) or len(terminal) > MAX_TERMINAL):
        raise PaymentError("invalid_request", f"terminal must be at most {MAX_TERMINAL} chars")
    return terminal


def check_name(name: Any) -> str:
    """The stripped customer name, 1 to :data:`MAX_NAME` characters."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
        raise PaymentError("invalid_request", f"name must be 1 to {MAX_NAME} characters")
    return name.strip()


def check_templates(templates: Sequence[Template]) -> list[Template]:
    """1 to :data:`MAX_TEMPLATES` :class:`palmpay.embed.Template` objects, all the same sizes:
    a finite 1-D float vector (returned as float32) and a 1-D uint8 code each."""
    if not isinstance(templates, Sequence) or not templates:
        raise PaymentError("invalid_template", "at least one palm template is required")
    if len(templates) > MAX_TEMPLATES:
        raise PaymentError("invalid_template", f"at most {MAX_TEMPLATES} templates at once")
    out: list[Template] = []
    shapes: set[tuple[int, int]] = set()
    for i, item in enumerate(templates):
        if not isinstance(item, Template):
            raise PaymentError("invalid_template", f"template {i}: expected a palmpay.embed."
                               f"Template, got {type(item).__name__}")
        vector = np.asarray(item.vector)
        code = np.asarray(item.code)
        if vector.ndim != 1 or not np.issubdtype(vector.dtype, np.floating) or not vector.size:
            raise PaymentError("invalid_template", f"template {i}: vector must be 1-D float")
        if code.ndim != 1 or code.dtype != np.uint8 or not code.size:
            raise PaymentError("invalid_template", f"template {i}: code must be 1-D uint8")
        vector = vector.astype(np.float32)
        if not np.isfinite(vector).all():
            raise PaymentError("invalid_template", f"template {i}: vector is not finite")
        shapes.add((vector.size, code.size))
        out.append(Template(vector, code))
    if len(shapes) > 1:
        raise PaymentError("invalid_template", "templates differ in vector or code length")
    return out
