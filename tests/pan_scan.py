"""Find card numbers (PANs) in clear in text or bytes: the suite-wide log check uses it.

A hit is a card number as people and programs write one — 13-19 digits in a row, groups of four
separated by one space or dash (4-4-4-4, 4-4-4-4-3), or the 4-6-5 Amex grouping — that passes
the Luhn check and starts with a card-network prefix (3, 4, 5 or 6), or any of the test cards
the suite uses, whatever their formatting. (Allowing a separator between *any* two digits would
read "…540163 2026-11-29 08" as a card number.)
"""

from __future__ import annotations

import re

__all__ = ["TEST_PANS", "find_pans", "luhn_ok"]

TEST_PANS = (
    "4242424242424242",
    "4000000000000002",
    "4000000000009995",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
)
_CANDIDATE = re.compile(
    rb"(?<![0-9])(?:"
    rb"[3-6][0-9]{12,18}"
    rb"|[3-6][0-9]{3}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{3})?"
    rb"|3[0-9]{3}([ -])[0-9]{6}\2[0-9]{5}"
    rb")(?![0-9])"
)


def luhn_ok(digits: str) -> bool:
    """True when ``digits`` passes the Luhn checksum."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def find_pans(data: bytes | str) -> list[str]:
    """Every card number found in ``data`` (digits only, deduplicated, in order)."""
    raw = data.encode() if isinstance(data, str) else data
    found: list[str] = []
    for match in _CANDIDATE.finditer(raw):
        digits = re.sub(rb"[ -]", b"", match.group()).decode()
        if luhn_ok(digits) and digits not in found:
            found.append(digits)
    compact = re.sub(rb"[ -]", b"", raw)
    for pan in TEST_PANS:
        if pan.encode() in compact and pan not in found:
            found.append(pan)
    return found
