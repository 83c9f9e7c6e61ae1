"""Checks of the values the payment service is given: amounts, currencies, names, terminals and
palm templates. Each returns the normalised value or raises
:class:`~palmpay.payments.errors.PaymentError` with a request-value code (``invalid_amount``,
``amount_too_large``, ``invalid_currency``, ``invalid_request``, ``invalid_template``).

Text: :func:`text_problem` is the one rule for every string the service or the API takes from a
caller (names, card holder names, API key names, webhook URLs, ids in paths, form fields). It
refuses control characters (Unicode category ``Cc``, NUL included: PostgreSQL cannot store NUL
in ``text`` and a newline in a name forges log lines), lone surrogates (``Cs``: they cannot be
encoded as UTF-8 by either database) and the line and paragraph separators U+2028/U+2029
(``Zl``, ``Zp``). Where a value is required to be a *name*, a value made only of white space,
separators and invisible format characters (``Zs``, ``Cf``, ``str.isspace``) is refused too.
Problems name the field and never quote the value.
"""

from __future__ import annotations

import operator
import unicodedata
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
    "check_text",
    "text_problem",
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


#: Unicode categories no caller-given string may contain (see the module docstring).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
#: Categories that do not make a name visible on their own.
_BLANK_CATEGORIES = frozenset({"Zs", "Cf"})


def text_problem(value: str, *, name: bool = False) -> str | None:
    """Why ``value`` is refused, in words that never quote it, or None when it is acceptable.

    ``name=True`` also refuses a value with no visible character (empty, or only white space,
    ``Zs`` separators and ``Cf`` format characters such as U+200B)."""
    for char in value:
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES:
            what = {"Cs": "an unpaired surrogate", "Zl": "a line separator",
                    "Zp": "a paragraph separator"}.get(category, "a control character")
            return f"must not contain {what} (U+{ord(char):04X})"
    if name and all(c.isspace() or unicodedata.category(c) in _BLANK_CATEGORIES for c in value):
        return "must not be blank"
    return None


def check_text(value: Any, field: str, *, max_len: int, name: bool = False) -> str:
    """``value`` stripped of surrounding white space, checked by :func:`text_problem` and at
    most ``max_len`` characters; else ``invalid_request`` naming ``field`` (never the value)."""
    if not isinstance(value, str):
        raise PaymentError("invalid_request", f"{field} must be a string", extra={"field": field})
    problem = text_problem(value, name=name)
    if problem is not None:
        raise PaymentError("invalid_request", f"{field} {problem}", extra={"field": field})
    value = value.strip()
    if len(value) > max_len:
        raise PaymentError("invalid_request", f"{field} must be at most {max_len} characters",
                           extra={"field": field})
    return value


def check_name(name: Any, field: str = "name") -> str:
    """The stripped customer name, 1 to :data:`MAX_NAME` characters with a visible one, free of
    control characters (:func:`text_problem`)."""
    if isinstance(name, str) and not name.strip():
        raise PaymentError("invalid_request", f"{field} must be 1 to {MAX_NAME} characters",
                           extra={"field": field})
    return check_text(name, field, max_len=MAX_NAME, name=True)


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
