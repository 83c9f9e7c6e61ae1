"""Card numbers: normalisation, Luhn, brands, expiry, masking (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from palmpay.payments.cards import (
    CardInput,
    check_expiry,
    detect_brand,
    is_expired,
    luhn_ok,
    normalise_pan,
    validate_card,
)
from palmpay.payments.errors import PaymentError
from tests.pan_scan import find_pans
from tests.payments.conftest import EXP_YEAR, VISA


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("4222222222222", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("6445644564456445", "discover"),
        ("3566002020360505", "jcb"),
        ("30569309025904", "diners"),
        ("6200000000000005", "unionpay"),
        ("6759649826438453", "maestro"),
    ],
)
def test_brands_and_luhn(number: str, brand: str) -> None:
    assert luhn_ok(number)
    assert detect_brand(number) == brand
    assert validate_card(CardInput(number, 1, EXP_YEAR)).brand == brand


def test_luhn_rejects_single_digit_errors() -> None:
    for i in range(len(VISA)):
        for d in "0123456789":
            if d != VISA[i]:
                assert not luhn_ok(VISA[:i] + d + VISA[i + 1 :])


def test_normalise() -> None:
    assert normalise_pan(" 4242 4242-4242 4242 ") == VISA
    bad_numbers = ("4242.4242.4242.4242", "42424242424242x2", "１２３４５６７８９０１２", "4242",
                   "4" * 20, "")
    for bad in bad_numbers:
        with pytest.raises(PaymentError) as exc:
            normalise_pan(bad)
        assert exc.value.code == "invalid_card"


def test_validate_errors_never_quote_the_number() -> None:
    for number in ("4242424242424241", "4242-4242-4242-424X"):
        with pytest.raises(PaymentError) as exc:
            validate_card(CardInput(number, 1, EXP_YEAR))
        assert exc.value.code == "invalid_card"
        text = f"{exc.value} {exc.value!r} {exc.value.detail}"
        assert "4242424242424" not in text.replace(" ", "").replace("-", "")
    with pytest.raises(PaymentError) as exc:
        validate_card(CardInput(VISA, 1, 2001))
    assert exc.value.code == "expired_card" and not find_pans(str(exc.value))


def test_expiry_end_of_month() -> None:
    last_moment = datetime(2030, 4, 30, 23, 59, 59, tzinfo=UTC)
    first_of_next = datetime(2030, 5, 1, 0, 0, 0, tzinfo=UTC)
    assert not is_expired(4, 2030, last_moment)
    assert is_expired(4, 2030, first_of_next)
    assert check_expiry(4, 30, last_moment) == (4, 2030)  # two-digit year
    with pytest.raises(PaymentError) as exc:
        check_expiry(4, 2030, first_of_next)
    assert exc.value.code == "expired_card"
    assert check_expiry(12, 2030, datetime(2030, 12, 31, 23, 0, tzinfo=UTC)) == (12, 2030)
    for month, year in [(0, 2030), (13, 2030), (True, 2030), (1, 2090), (1, -1), ("1", 2030)]:
        with pytest.raises(PaymentError) as exc:
            check_expiry(month, year, last_moment)
        assert exc.value.code == "invalid_card"


def test_card_input_repr_masks() -> None:
    card = CardInput("4242 4242 4242 4242", 12, EXP_YEAR, "Ann")
    for text in (repr(card), str(card), f"{card}", repr([card])):
        assert "4242" in text and not find_pans(text)
    valid = validate_card(card)
    assert valid.pan == VISA and valid.last4 == "4242" and not find_pans(repr(valid))
