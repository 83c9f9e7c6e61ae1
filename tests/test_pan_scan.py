from __future__ import annotations

import logging

from tests.conftest import _SUITE_LOG
from tests.pan_scan import find_pans, luhn_ok


def test_luhn():
    assert luhn_ok("4242424242424242") and luhn_ok("79927398713")
    assert not luhn_ok("4242424242424241")


def test_finds_card_numbers_in_any_format():
    text = "pan=4242 4242 4242 4242 other 5555-5555-5555-4444 id=1764403200000 x4000000000000002y"
    assert find_pans(text) == ["4242424242424242", "5555555555554444", "4000000000000002"]
    assert find_pans(b"token tok_abc last4 4242 amount 1250 ts 1764403200123") == []


def test_suite_log_is_being_captured():
    logging.getLogger("palmpay.test").warning("suite log canary (masked card ****4242)")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "suite log canary" in _SUITE_LOG.read_text()
    assert find_pans(_SUITE_LOG.read_bytes()) == []


def test_dates_next_to_numbers_are_not_card_numbers():
    assert find_pans(b"x5401632026-11-29 08:12:33") == []
    assert find_pans("amex 3782 822463 10005") == ["378282246310005"]
