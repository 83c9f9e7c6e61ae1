"""Card numbers: normalisation, Luhn check, brand detection, expiry.

A card number (PAN) is only ever held in memory between the request that carries it and the
vault that encrypts it (:class:`~palmpay.payments.vault.CardVault`). :class:`CardInput` masks it
in ``repr``/``str``, and no error raised here quotes it. The CVV is never accepted: PalmPay does
not ask for it and has nowhere to put it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from palmpay.payments.errors import PaymentError

__all__ = [
    "CardInput",
    "ValidCard",
    "normalise_pan",
    "luhn_ok",
    "luhn_complete",
    "detect_brand",
    "check_expiry",
    "is_expired",
    "validate_card",
    "mask_pan",
    "BRANDS",
]

#: Brands and how they are recognised: (brand, IIN ranges as (low, high) prefixes of equal
#: length, allowed lengths). The first match wins, so narrower ranges come first.
_BRAND_RULES: list[tuple[str, list[tuple[str, str]], tuple[int, ...]]] = [
    ("amex", [("34", "34"), ("37", "37")], (15,)),
    ("diners", [("300", "305"), ("36", "36"), ("38", "39")], (14, 15, 16, 17, 18, 19)),
    ("jcb", [("3528", "3589")], (16, 17, 18, 19)),
    (
        "discover",
        [("6011", "6011"), ("644", "649"), ("65", "65"), ("622126", "622925")],
        (16, 17, 18, 19),
    ),
    ("unionpay", [("62", "62"), ("81", "81")], (16, 17, 18, 19)),
    ("mastercard", [("51", "55"), ("2221", "2720")], (16,)),
    ("maestro", [("50", "50"), ("56", "58"), ("6", "6")], (12, 13, 14, 15, 16, 17, 18, 19)),
    ("visa", [("4", "4")], (13, 16, 19)),
]
#: Every brand :func:`detect_brand` can return (``"unknown"``: a Luhn-valid number of an
#: unlisted scheme, still accepted).
BRANDS = tuple(rule[0] for rule in _BRAND_RULES) + ("unknown",)
#: Card numbers are 12 to 19 digits (ISO/IEC 7812).
_MIN_LEN, _MAX_LEN = 12, 19
#: Expiry years further ahead than this are refused as typos.
_MAX_YEARS_AHEAD = 30
_SEPARATORS = re.compile(r"[ \-]")


def normalise_pan(number: str) -> str:
    """Digits only: spaces and dashes removed. Anything else → ``invalid_card``."""
    if not isinstance(number, str):
        raise PaymentError("invalid_card", "the card number must be a string of digits")
    digits = _SEPARATORS.sub("", number.strip())
    if not digits.isascii() or not digits.isdigit():
        raise PaymentError("invalid_card", "the card number may contain only digits, spaces, -")
    if not _MIN_LEN <= len(digits) <= _MAX_LEN:
        raise PaymentError(
            "invalid_card", f"a card number has {_MIN_LEN} to {_MAX_LEN} digits, not {len(digits)}"
        )
    return digits


def _luhn_sum(digits: str, double_last: bool) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == (0 if double_last else 1):
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total


def luhn_ok(digits: str) -> bool:
    """Whether the digit string passes the Luhn (mod 10) check."""
    return _luhn_sum(digits, double_last=False) % 10 == 0


def luhn_complete(body: str) -> str:
    """``body`` with its Luhn check digit appended (a valid card number from a prefix)."""
    return body + str((10 - _luhn_sum(body, double_last=True) % 10) % 10)


def detect_brand(digits: str) -> str:
    """The card brand from the number's prefix and length (``"unknown"`` if none fits)."""
    for brand, ranges, lengths in _BRAND_RULES:
        if len(digits) not in lengths:
            continue
        for low, high in ranges:
            prefix = digits[: len(low)]
            if low <= prefix <= high:
                return brand
    return "unknown"


def is_expired(exp_month: int, exp_year: int, now: datetime | None = None) -> bool:
    """A card is valid through the last day of its expiry month (UTC)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return (exp_year, exp_month) < (now.year, now.month)


def check_expiry(exp_month: int, exp_year: int, now: datetime | None = None) -> tuple[int, int]:
    """Validated ``(month, four-digit year)``; two-digit years mean 20YY.

    Raises ``invalid_card`` for a malformed date, ``expired_card`` for a past month.
    """
    if isinstance(exp_month, bool) or not isinstance(exp_month, int) or not 1 <= exp_month <= 12:
        raise PaymentError("invalid_card", "exp_month must be an integer from 1 to 12")
    if isinstance(exp_year, bool) or not isinstance(exp_year, int) or exp_year < 0:
        raise PaymentError("invalid_card", "exp_year must be a positive integer")
    if exp_year < 100:
        exp_year += 2000
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if exp_year > now.year + _MAX_YEARS_AHEAD:
        raise PaymentError("invalid_card", f"exp_year {exp_year} is too far in the future")
    if is_expired(exp_month, exp_year, now):
        raise PaymentError(
            "expired_card", f"the card expired at the end of {exp_month:02d}/{exp_year}"
        )
    return exp_month, exp_year


def mask_pan(digits: str) -> str:
    """``•••• 4242``: the last four digits only (safe to log)."""
    return f"•••• {digits[-4:]}" if len(digits) >= 4 else "••••"


@dataclass(frozen=True)
class CardInput:
    """A card as a customer types it. ``number`` may contain spaces or dashes.

    ``repr``/``str`` show only the last four digits. ``holder_name`` is checked for length but
    not stored (the acquirer does not need it for a card-on-file charge).
    """

    number: str = field(repr=False)
    exp_month: int
    exp_year: int
    holder_name: str | None = None

    def __repr__(self) -> str:
        digits = _SEPARATORS.sub("", self.number) if isinstance(self.number, str) else ""
        return (
            f"CardInput(number={mask_pan(digits)!r}, exp_month={self.exp_month!r}, "
            f"exp_year={self.exp_year!r}, holder_name={self.holder_name!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class ValidCard:
    """A card that passed :func:`validate_card`: normalised digits, brand, four-digit year."""

    pan: str = field(repr=False)
    brand: str
    last4: str
    exp_month: int
    exp_year: int

    def __repr__(self) -> str:
        return (
            f"ValidCard(pan={mask_pan(self.pan)!r}, brand={self.brand!r}, "
            f"exp_month={self.exp_month}, exp_year={self.exp_year})"
        )

    __str__ = __repr__


def validate_card(card: CardInput, now: datetime | None = None) -> ValidCard:
    """Normalise and check a card: digits, length, Luhn, brand length rules, expiry, holder name.

    Raises :class:`PaymentError` ``invalid_card`` or ``expired_card`` (never quoting the number).
    """
    pan = normalise_pan(card.number)
    if not luhn_ok(pan):
        raise PaymentError("invalid_card", "the card number fails the Luhn check")
    brand = detect_brand(pan)
    exp_month, exp_year = check_expiry(card.exp_month, card.exp_year, now)
    if card.holder_name is not None and (
        not isinstance(card.holder_name, str) or len(card.holder_name) > 200
    ):
        raise PaymentError("invalid_card", "holder_name must be a string of at most 200 characters")
    return ValidCard(pan=pan, brand=brand, last4=pan[-4:], exp_month=exp_month, exp_year=exp_year)
