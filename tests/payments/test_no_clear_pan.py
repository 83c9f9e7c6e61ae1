"""No card number in clear: not in the SQLite file (and its WAL), not in a pg_dump of the
schema, not in any log record or error, whatever happened (enrol, pay, decline, refund,
unenrol, rotate)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import text

from palmpay.config import Settings
from palmpay.payments import admin
from palmpay.payments.cards import CardInput
from palmpay.payments.errors import PaymentError
from tests.dbfixtures import pg_dump_data, sqlite_path_of
from tests.pan_scan import find_pans
from tests.payments.conftest import (
    ALL_PANS,
    AMEX,
    DECLINE,
    DISCOVER,
    EXP_YEAR,
    MASTERCARD,
    NO_FUNDS,
    VISA,
    card,
    make_templates,
)


def _exercise(service, enroll, settings: Settings) -> list[str]:
    """Everything that touches a card; returns the text of every error raised."""
    errors: list[str] = []
    customers = {n: enroll(n) for n in (VISA, MASTERCARD, AMEX, DECLINE, NO_FUNDS)}
    pay = service.authorize(customers[VISA].id, 1000, "eur")
    service.refund(pay.id, 10)
    held = service.authorize(customers[AMEX].id, 400, "eur", capture_method="manual")
    service.capture(held.id, 100)
    for number in (DECLINE, NO_FUNDS):
        try:
            service.authorize(customers[number].id, 100, "eur")
        except PaymentError as exc:
            errors.append(f"{exc} {exc!r} {exc.extra}")
    for bad in (card(VISA), card("4242424242424241"), card(DISCOVER, exp_year=2001),
                CardInput(DISCOVER * 2, 1, EXP_YEAR)):
        try:
            service.create_customer("dup", bad, make_templates(1), True)
        except PaymentError as exc:
            errors.append(f"{exc} {exc!r} {exc.extra}")
    service.delete_customer(customers[MASTERCARD].id)
    admin.rotate_keys(settings)
    assert service.authorize(customers[VISA].id, 5, "eur").status == "succeeded"
    return errors


def test_no_pan_in_storage_or_logs(db_url, db, service, enroll, keyring_path, caplog) -> None:
    settings = Settings(database_url=db_url, keyring_file=keyring_path)
    with caplog.at_level(logging.DEBUG):
        errors = _exercise(service, enroll, settings)
    assert len(errors) == 6
    assert not find_pans("\n".join(errors))

    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    assert "tokenised" in logged  # the log was captured at all
    assert not find_pans(logged), "card number in a log record"

    assert not _pans_stored(db_url, db)
    # positive control: the same scan does see a card number written in clear
    with db.session() as s:
        s.execute(text("UPDATE customers SET name = :n"), {"n": "card 4000-0000-0000-9995"})
    assert NO_FUNDS in _pans_stored(db_url, db)


def _pans_stored(db_url: str, db) -> list[str]:
    """Card numbers found in the SQLite files (+ WAL) or the schema's pg_dump --data-only."""
    path = sqlite_path_of(db_url)
    if path is not None:
        db.dispose()  # close connections (checkpoints the WAL) but also scan any leftovers
        files = sorted(Path(path).parent.glob(Path(path).name + "*"))
        data = b"".join(f.read_bytes() for f in files)
        assert len(data) > 10_000 and b"tok_" in data  # we are reading the real database
        # Every card this test used, in any formatting or as hex. (A generic Luhn scan of raw
        # file bytes finds false positives: SQLite stores a row's text columns back to back, so
        # an id ending in digits runs into a "2026-11-29 08:..." timestamp.)
        compact = re.sub(rb"[ -]", b"", data)
        return [p for p in ALL_PANS if p.encode() in compact or p.encode().hex().encode() in data]
    dump = pg_dump_data(db_url)
    assert "tok_" in dump and "ledger_entries" in dump
    # bytea columns are dumped as \x<hex>, and card fingerprints are 64-hex HMACs: random hex
    # has digit runs that pass Luhn by chance (a fingerprint once held "6651750715157"). So look
    # for the test cards in clear and as ASCII hex everywhere, and for any other card number
    # outside those hex runs.
    found = [p for p in ALL_PANS if p in dump or p.encode().hex() in dump]
    outside_hex = re.sub(r"\\x[0-9a-f]*|(?<![0-9a-z])[0-9a-f]{32,}(?![0-9a-z])", " ", dump)
    return found + [p for p in find_pans(outside_hex) if p not in found]


@pytest.mark.parametrize("number", ALL_PANS)
def test_card_input_never_shows_number(number: str) -> None:
    text = f"{CardInput(number, 1, EXP_YEAR)!r} {CardInput(number, 1, EXP_YEAR)}"
    assert not find_pans(text)
