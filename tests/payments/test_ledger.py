"""Ledger on both backends: consistent after every operation, append-only in the database,
tampering detected by check()."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from palmpay.config import Settings
from palmpay.payments import admin
from palmpay.payments.errors import PaymentError
from tests.payments.conftest import DECLINE, MASTERCARD, VISA


def _history(service, enroll) -> dict[str, str]:
    ann, bob, eve = enroll(VISA), enroll(MASTERCARD), enroll(DECLINE)
    ids = {
        "auto": service.authorize(ann.id, 1000, "eur").id,
        "held": service.authorize(ann.id, 500, "eur", capture_method="manual").id,
        "partial": service.authorize(bob.id, 800, "usd", capture_method="manual").id,
        "canceled": service.authorize(bob.id, 300, "usd", capture_method="manual").id,
    }
    service.capture(ids["partial"], 600)
    service.cancel(ids["canceled"])
    service.refund(ids["auto"], 250)
    service.refund(ids["partial"])
    with pytest.raises(PaymentError) as exc:
        service.authorize(eve.id, 50, "eur")
    ids["failed"] = exc.value.extra["payment"]
    return ids


def test_ledger_ok_after_every_kind_of_operation(service, enroll, db_url, keyring_path) -> None:
    _history(service, enroll)
    report = service.check_ledger()
    assert report.ok, report.problems
    assert report.payments_checked == 5 and report.problems == []
    assert report.entries_checked == 2 + 1 + 3 + 2 + 2 + 1  # auto+ref, held, partial, cancel, refs
    assert admin.ledger_check(Settings(database_url=db_url, keyring_file=keyring_path)).ok


def test_ledger_is_append_only(service, enroll, db) -> None:
    _history(service, enroll)
    for statement in ("UPDATE ledger_entries SET amount = amount + 1",
                      "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"), db.session() as s:
            s.execute(text(statement))
    if db.backend == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), db.session() as s:
            s.execute(text("TRUNCATE ledger_entries CASCADE"))
    assert service.check_ledger().ok


@pytest.mark.parametrize(
    ("which", "sql", "expect"),
    [
        ("auto", "UPDATE payments SET amount_refunded = 100 WHERE id = :id", "amount_refunded"),
        ("auto", "UPDATE payments SET amount_received = 900 WHERE id = :id", "amount_received"),
        ("held", "UPDATE payments SET status = 'canceled', amount_capturable = 0 WHERE id = :id",
         "released total"),
        ("partial", "UPDATE refunds SET amount = 100 WHERE payment_id = :id", "refund entries"),
        ("failed", "UPDATE payments SET status = 'succeeded' WHERE id = :id", "decline entry"),
    ],
)
def test_tampered_rows_detected(service, enroll, db, which, sql, expect) -> None:
    ids = _history(service, enroll)
    with db.session() as s:
        s.execute(text(sql), {"id": ids[which]})
    report = service.check_ledger()
    assert not report.ok
    assert any(ids[which] in p or expect in p for p in report.problems)
    assert any(expect in p for p in report.problems), report.problems


def test_tampered_entry_detected_with_triggers_bypassed(service, enroll, db) -> None:
    ids = _history(service, enroll)
    with db.session() as s:
        if db.backend == "postgresql":
            s.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
            s.execute(text("UPDATE ledger_entries SET amount = 1 WHERE payment_id = :id "
                           "AND kind = 'capture'"), {"id": ids["auto"]})
            s.execute(text("ALTER TABLE ledger_entries ENABLE TRIGGER USER"))
        else:
            s.execute(text("DROP TRIGGER ledger_entries_no_delete"))
            s.execute(text("DELETE FROM ledger_entries WHERE payment_id = :id "
                           "AND kind = 'capture'"), {"id": ids["auto"]})
    report = service.check_ledger()
    assert not report.ok
    assert any(p.startswith(ids["auto"]) for p in report.problems), report.problems
