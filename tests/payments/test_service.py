"""PaymentService on SQLite and PostgreSQL: enrolment, every payment transition, refunds,
declines, unenrolment, events."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from palmpay.api.errors import status_of
from palmpay.embed import Template
from palmpay.payments.errors import PaymentError
from palmpay.payments.models import Card, LedgerEntry, PalmTemplate
from palmpay.payments.service import PaymentService
from tests.payments.conftest import (
    AMEX,
    CARD_LIMIT,
    DECLINE,
    MASTERCARD,
    NO_FUNDS,
    VISA,
    card,
    make_templates,
)


def _code(exc_info) -> str:
    return exc_info.value.code


# -- enrolment ------------------------------------------------------------------------------


def test_create_and_get_customer(service: PaymentService, events) -> None:
    view = service.create_customer(" Ann ", card("4242 4242-4242 4242"), make_templates(3), True)
    assert view.id.startswith("cus_") and len(view.id) == 28
    assert view.name == "Ann" and view.status == "active" and view.templates == 3
    assert view.card.token.startswith("tok_") and len(view.card.token) == 28
    assert (view.card.brand, view.card.last4, view.card.status) == ("visa", "4242", "active")
    assert view.consent_at.tzinfo is not None and view.deleted_at is None
    assert service.get_customer(view.id) == view
    assert events == [("customer.created", view.to_dict())]
    assert events[0][1]["object"] == "customer" and events[0][1]["card"]["last4"] == "4242"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"consent": False}, "consent_required"),
        ({"name": ""}, "invalid_request"),
        ({"templates": []}, "invalid_template"),
        ({"templates": [Template(np.zeros(4, np.float32), np.zeros(3, np.float64))]},
         "invalid_template"),
        ({"templates": [(np.zeros(4, np.float32), np.zeros(3, np.uint8))]}, "invalid_template"),
        ({"card": card("4242424242424241")}, "invalid_card"),
        ({"card": card(VISA, exp_year=2020)}, "expired_card"),
    ],
)
def test_create_customer_rejects(service: PaymentService, kwargs: dict, code: str) -> None:
    args = {"name": "Bob", "card": card(), "templates": make_templates(1), "consent": True}
    args.update(kwargs)
    with pytest.raises(PaymentError) as exc:
        service.create_customer(**args)
    # expired_card is a card error (402) at enrolment as at payment: one status per code.
    assert exc.value.code == code
    assert status_of(code) == (402 if code == "expired_card" else 422)


def test_duplicate_card_refused_until_unenrolled(service: PaymentService, enroll) -> None:
    first = enroll(VISA)
    with pytest.raises(PaymentError) as exc:
        enroll("4242-4242-4242-4242")
    assert (exc.value.code, status_of(exc.value.code)) == ("duplicate_card", 409)
    service.delete_customer(first.id)
    again = enroll(VISA)  # the revoked card no longer blocks the number
    assert again.card.token != first.card.token


def test_unknown_ids(service: PaymentService) -> None:
    for call, code in [
        (lambda: service.get_customer("cus_nope"), "customer_not_found"),
        (lambda: service.get_payment("pay_nope"), "payment_not_found"),
        (lambda: service.get_refund("re_nope"), "refund_not_found"),
        (lambda: service.capture("pay_nope"), "payment_not_found"),
        (lambda: service.authorize("cus_nope", 100, "eur"), "customer_not_found"),
        (lambda: service.delete_customer("cus_nope"), "customer_not_found"),
    ]:
        with pytest.raises(PaymentError) as exc:
            call()
        assert exc.value.code == code and status_of(exc.value.code) == 404


def test_templates_round_trip_and_add(service: PaymentService, enroll) -> None:
    ann = enroll(VISA, n_templates=2)
    bob = enroll(MASTERCARD, n_templates=1)
    extra = make_templates(1, seed=99)
    assert service.add_templates(bob.id, extra).templates == 2
    records = list(service.templates())
    assert sorted(who for who, _ in records) == sorted([ann.id] * 2 + [bob.id] * 2)
    # Returned under the service's cancelable transform (palmpay.payments.cancelable).
    protect = service.template_transform.protect
    expected = {tuple(np.round(protect(t).vector[:4], 6))
                for t in make_templates(2, 0) + make_templates(1, 1) + extra}
    got = {tuple(np.round(r.vector[:4], 6)) for _, r in records}
    assert got == expected
    for _, r in records:
        assert isinstance(r, Template)
        assert r.vector.dtype == np.float32 and r.vector.shape == (1176,)
        assert r.code.dtype == np.uint8 and r.code.shape == (768,)


# -- payments -------------------------------------------------------------------------------


def test_automatic_payment_succeeds(service: PaymentService, enroll, events) -> None:
    cus = enroll(VISA)
    pay = service.authorize(cus.id, 1250, "EUR", terminal="till-1")
    assert pay.id.startswith("pay_")
    assert (pay.status, pay.amount, pay.currency, pay.capture_method) == (
        "succeeded", 1250, "eur", "automatic")
    assert (pay.amount_capturable, pay.amount_received, pay.amount_refunded) == (0, 1250, 0)
    assert pay.customer == cus.id and pay.card == cus.card and pay.terminal == "till-1"
    assert service.get_payment(pay.id) == pay
    assert events[-1] == ("payment.succeeded", pay.to_dict())
    assert service.list_payments(cus.id) == [pay]


def test_manual_capture_full(service: PaymentService, enroll, events) -> None:
    cus = enroll()
    pay = service.authorize(cus.id, 5000, "usd", capture_method="manual")
    assert (pay.status, pay.amount_capturable, pay.amount_received) == ("requires_capture", 5000, 0)
    assert events[-1][0] == "payment.requires_capture"
    done = service.capture(pay.id)
    assert (done.status, done.amount_capturable, done.amount_received) == ("succeeded", 0, 5000)
    assert events[-1] == ("payment.succeeded", done.to_dict())


def test_partial_capture_releases_rest(service: PaymentService, enroll, db) -> None:
    pay = service.authorize(enroll().id, 5000, "gbp", capture_method="manual")
    done = service.capture(pay.id, 3000)
    assert (done.status, done.amount, done.amount_received, done.amount_capturable) == (
        "succeeded", 5000, 3000, 0)
    with db.session(readonly=True) as s:
        kinds = [(e.kind, e.amount) for e in s.scalars(
            select(LedgerEntry).where(LedgerEntry.payment_id == pay.id).order_by(LedgerEntry.id))]
    assert kinds == [("authorization", 5000), ("capture", 3000), ("release", 2000)]
    # captured once: a second capture is an illegal transition
    with pytest.raises(PaymentError) as exc:
        service.capture(pay.id, 1000)
    assert (exc.value.code, status_of(exc.value.code)) == ("payment_unexpected_state", 409)
    # refunds are bounded by what was captured, not authorised
    with pytest.raises(PaymentError) as exc:
        service.refund(pay.id, 3001)
    assert exc.value.code == "amount_too_large"
    assert service.refund(pay.id).amount == 3000
    assert service.check_ledger().ok


def test_capture_more_than_authorised(service: PaymentService, enroll) -> None:
    pay = service.authorize(enroll().id, 1000, "eur", capture_method="manual")
    with pytest.raises(PaymentError) as exc:
        service.capture(pay.id, 1001)
    assert exc.value.code == "amount_too_large"
    for bad in (0, -5, 1.5, "10", True):
        with pytest.raises(PaymentError) as exc:
            service.capture(pay.id, bad)
        assert exc.value.code == "invalid_amount"
    assert service.get_payment(pay.id).status == "requires_capture"


def test_cancel(service: PaymentService, enroll, events, acquirer) -> None:
    pay = service.authorize(enroll().id, 700, "chf", capture_method="manual")
    assert acquirer.outstanding(VISA) == 700
    done = service.cancel(pay.id)
    assert (done.status, done.amount_capturable, done.amount_received) == ("canceled", 0, 0)
    assert events[-1] == ("payment.canceled", done.to_dict())
    assert acquirer.outstanding(VISA) == 0
    assert service.check_ledger().ok


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ("succeeded", "cancel"),
        ("succeeded", "capture"),
        ("canceled", "cancel"),
        ("canceled", "capture"),
        ("canceled", "refund"),
        ("requires_capture", "refund"),
        ("failed", "capture"),
        ("failed", "cancel"),
        ("failed", "refund"),
    ],
)
def test_illegal_transitions(service: PaymentService, enroll, setup: str, action: str) -> None:
    if setup == "failed":
        cus = enroll(DECLINE)
        with pytest.raises(PaymentError) as exc:
            service.authorize(cus.id, 100, "eur")
        pid = exc.value.extra["payment"]
    else:
        cus = enroll()
        pid = service.authorize(cus.id, 100, "eur", capture_method="manual").id
        if setup == "succeeded":
            service.capture(pid)
        elif setup == "canceled":
            service.cancel(pid)
    before = service.get_payment(pid)
    with pytest.raises(PaymentError) as exc:
        getattr(service, action)(pid)
    assert (exc.value.code, status_of(exc.value.code)) == ("payment_unexpected_state", 409)
    assert exc.value.extra == {"payment": pid, "payment_status": setup}
    assert service.get_payment(pid) == before
    assert service.check_ledger().ok


def test_refunds_partial_full_and_beyond(service: PaymentService, enroll, events) -> None:
    pay = service.authorize(enroll().id, 1000, "eur")
    r1 = service.refund(pay.id, 300)
    assert r1.id.startswith("re_") and (r1.payment, r1.amount, r1.currency, r1.status) == (
        pay.id, 300, "eur", "succeeded")
    assert events[-1] == ("refund.created", r1.to_dict())
    assert service.get_refund(r1.id) == r1
    with pytest.raises(PaymentError) as exc:
        service.refund(pay.id, 701)
    assert (exc.value.code, status_of(exc.value.code), exc.value.extra["refundable"]) == (
        "amount_too_large", 422, 700)
    r2 = service.refund(pay.id)  # the rest
    assert r2.amount == 700
    after = service.get_payment(pay.id)
    assert (after.status, after.amount_received, after.amount_refunded) == ("succeeded", 1000, 1000)
    with pytest.raises(PaymentError) as exc:
        service.refund(pay.id, 1)
    assert exc.value.code == "amount_too_large"
    with pytest.raises(PaymentError) as exc:
        service.refund(pay.id)
    assert exc.value.code == "amount_too_large"
    assert service.list_refunds(pay.id) == [r1, r2]
    assert service.check_ledger().ok


def test_payment_validation(service: PaymentService, enroll) -> None:
    cus = enroll()
    for args, code in [
        ((0, "eur"), "invalid_amount"),
        ((-1, "eur"), "invalid_amount"),
        ((10.0, "eur"), "invalid_amount"),
        ((100, "xyz"), "invalid_currency"),
        ((100, "eu"), "invalid_currency"),
        ((100, None), "invalid_currency"),
        ((100_000_000, "eur"), "amount_too_large"),
    ]:
        with pytest.raises(PaymentError) as exc:
            service.authorize(cus.id, *args)
        assert exc.value.code == code and status_of(code) == 422
    with pytest.raises(PaymentError) as exc:
        service.authorize(cus.id, 100, "eur", capture_method="later")
    assert exc.value.code == "invalid_request"
    assert service.list_payments(cus.id) == []


# -- declines -------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "code"), [(DECLINE, "card_declined"),
                                              (NO_FUNDS, "insufficient_funds")])
def test_decline_cards(service: PaymentService, enroll, events, db, number, code) -> None:
    cus = enroll(number)
    with pytest.raises(PaymentError) as exc:
        service.authorize(cus.id, 2500, "eur", terminal="t9")
    err = exc.value
    assert (err.code, status_of(err.code)) == (code, 402)
    assert err.extra["decline_code"] == code
    pay = service.get_payment(err.extra["payment"])
    assert (pay.status, pay.decline_code, pay.amount, pay.amount_received) == (
        "failed", code, 2500, 0)
    assert events[-1] == ("payment.failed", pay.to_dict())
    with db.session(readonly=True) as s:
        kinds = s.execute(select(LedgerEntry.kind, LedgerEntry.amount)
                          .where(LedgerEntry.payment_id == pay.id)).all()
    assert [tuple(k) for k in kinds] == [("decline", 2500)]
    assert service.check_ledger().ok


def test_card_limit(service: PaymentService, enroll, acquirer) -> None:
    cus = enroll(AMEX)
    with pytest.raises(PaymentError) as exc:  # one payment above the limit
        service.authorize(cus.id, CARD_LIMIT + 1, "eur")
    assert exc.value.code == "insufficient_funds"
    held = service.authorize(cus.id, 60_000, "eur", capture_method="manual")
    service.authorize(cus.id, 30_000, "eur")
    with pytest.raises(PaymentError) as exc:  # cumulative: 60k held + 30k captured + 20k
        service.authorize(cus.id, 20_000, "eur")
    assert exc.value.code == "insufficient_funds"
    service.capture(held.id, 10_000)  # releases 50k
    assert acquirer.outstanding(AMEX) == 40_000
    assert service.authorize(cus.id, 60_000, "eur").status == "succeeded"
    assert service.check_ledger().ok


def test_stored_card_expired_declines(service: PaymentService, enroll, db) -> None:
    cus = enroll(MASTERCARD)
    with db.session() as s:  # the card expired since enrolment
        row = s.scalars(select(Card).where(Card.customer_id == cus.id)).one()
        row.exp_year = 2021
    with pytest.raises(PaymentError) as exc:
        service.authorize(cus.id, 100, "eur")
    assert (exc.value.code, status_of(exc.value.code)) == ("expired_card", 402)


# -- unenrolment ----------------------------------------------------------------------------


def test_delete_customer(service: PaymentService, enroll, db, events) -> None:
    cus = enroll(VISA, n_templates=3)
    other = enroll(MASTERCARD, n_templates=1)
    paid = service.authorize(cus.id, 900, "eur")
    held = service.authorize(cus.id, 400, "eur", capture_method="manual")

    gone = service.delete_customer(cus.id)
    assert (gone.status, gone.templates, gone.card.status) == ("deleted", 0, "revoked")
    assert gone.deleted_at is not None and gone.card.token == cus.card.token
    assert events[-1] == ("customer.deleted", gone.to_dict())
    with db.session(readonly=True) as s:
        assert s.scalars(select(PalmTemplate).where(PalmTemplate.customer_id == cus.id)).all() == []
        row = s.scalars(select(Card).where(Card.customer_id == cus.id)).one()
        assert row.ciphertext is None and row.wrapped_dek is None and row.kek_id is None
    assert {who for who, _ in service.templates()} == {other.id}

    # payments are kept; the held one can still be captured, the paid one refunded
    kept = service.get_payment(paid.id)
    assert kept.card.status == "revoked"  # the card as it is now
    assert kept.model_copy(update={"card": paid.card}) == paid
    assert service.capture(held.id).status == "succeeded"
    assert service.refund(paid.id, 100).amount == 100
    # but no new payment
    with pytest.raises(PaymentError) as exc:
        service.authorize(cus.id, 100, "eur")
    assert (exc.value.code, status_of(exc.value.code)) == ("customer_deleted", 409)
    with pytest.raises(PaymentError) as exc:
        service.delete_customer(cus.id)
    assert exc.value.code == "customer_deleted"
    with pytest.raises(PaymentError) as exc:
        service.add_templates(cus.id, make_templates(1))
    assert exc.value.code == "customer_deleted"
    assert service.get_customer(cus.id) == gone
    assert service.check_ledger().ok


def test_event_handler_failure_does_not_undo(db, vault, acquirer, enroll) -> None:
    def boom(_type: str, _obj: dict, _merchant: str | None) -> None:
        raise RuntimeError("webhook queue down")

    svc = PaymentService(db, vault, acquirer, on_event=boom)
    cus = svc.create_customer("Zed", card(MASTERCARD), make_templates(1), True)
    assert svc.authorize(cus.id, 100, "eur").status == "succeeded"


def test_processor_error_on_capture(service: PaymentService, enroll, acquirer, monkeypatch) -> None:
    from palmpay.payments.processor import ProcessorError

    pay = service.authorize(enroll().id, 100, "eur", capture_method="manual")

    def fail(*_a, **_k):
        raise ProcessorError("acquirer timeout")

    monkeypatch.setattr(acquirer, "capture", fail)
    with pytest.raises(PaymentError) as exc:
        service.capture(pay.id)
    assert (exc.value.code, status_of(exc.value.code)) == ("processor_error", 502)
    assert service.get_payment(pay.id).status == "requires_capture"
    assert service.check_ledger().ok
