"""Tenancy, on SQLite and PostgreSQL: every key sees only its merchant's customers and payments
(the others answer 404 exactly like ids that never existed), the palm search at a terminal
covers only its merchant's customers, a shopper may enroll at two merchants, and unenrolling
needs the shopper's palm and card digits (admins may still delete directly)."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import select, text

from palmpay.api.keys import authenticate, create_api_key
from palmpay.api.models import Event, WebhookDelivery
from palmpay.api.webhooks import create_endpoint
from palmpay.db import _alembic_config, make_engine, upgrade
from palmpay.payments.merchants import DEFAULT_MERCHANT_ID, create_merchant
from tests.api.conftest import assert_problem


def _merchant_b(api) -> str:
    merchant = create_merchant(api.state.db, "Shop B").id
    for scope in ("kiosk", "terminal", "admin"):
        api.keys[f"b_{scope}"] = create_api_key(api.state.db, f"B {scope}", scope, merchant)[1]
    return merchant


def _same_problem(a: dict, b: dict) -> None:
    """Equal but for the fields naming the id asked for."""
    drop = {"instance", "detail", "customer", "payment"}
    assert {k: v for k, v in a.items() if k not in drop} == {
        k: v for k, v in b.items() if k not in drop}
    assert set(a) == set(b)


def _unenroll(api, customer_id: str, who: str, last4: str, key: str = "kiosk"):
    files = [("frames", (f"f{n}.jpg", blob, "image/jpeg"))
             for n, blob in enumerate(api.hands[who].probe)]
    return api.client.post(f"/v1/customers/{customer_id}/unenroll", files=files,
                           data={"card_last4": last4}, headers=api.auth(key))


def test_other_merchants_customers_and_payments_are_absent(api):
    _merchant_b(api)
    ann = api.enroll("ann", "visa").json()
    assert ann["id"] and "merchant" not in ann  # the merchant is never in a customer's JSON
    paid = api.pay("ann")
    assert paid.status_code == 201, paid.text
    payment = paid.json()["id"]

    nobody = assert_problem(api.client.get("/v1/customers/cus_nope", headers=api.auth("b_kiosk")),
                            404, "customer_not_found")
    for scope in ("b_kiosk", "b_admin"):
        read = api.client.get(f"/v1/customers/{ann['id']}", headers=api.auth(scope))
        _same_problem(assert_problem(read, 404, "customer_not_found"), nobody)
    gone = api.client.delete(f"/v1/customers/{ann['id']}", headers=api.auth("b_admin"))
    _same_problem(assert_problem(gone, 404, "customer_not_found"), nobody)
    no_payment = assert_problem(
        api.client.get("/v1/payments/pay_nope", headers=api.auth("b_admin")),
        404, "payment_not_found")
    for scope in ("b_terminal", "b_admin"):
        read = api.client.get(f"/v1/payments/{payment}", headers=api.auth(scope))
        _same_problem(assert_problem(read, 404, "payment_not_found"), no_payment)
        refund = api.client.post("/v1/refunds", json={"payment": payment},
                                 headers=api.auth(scope))
        assert_problem(refund, 404, "payment_not_found")

    # B's terminal does not recognise A's shopper; A's still does.
    assert_problem(api.pay("ann", key="b_terminal"), 422, "palm_not_recognised")
    assert api.client.get(f"/v1/customers/{ann['id']}",
                          headers=api.auth("kiosk")).json()["status"] == "active"
    assert api.pay("ann").status_code == 201
    assert api.client.get(f"/v1/payments/{payment}", headers=api.auth("admin")).status_code == 200
    # an admin sees the size of its own merchant's gallery only
    mine = api.client.get("/v1/status", headers=api.auth("admin")).json()
    theirs = api.client.get("/v1/status", headers=api.auth("b_admin")).json()
    assert mine["customers"] == 1 and mine["operating_point"]["enrolled_samples"] >= 3
    assert theirs["customers"] == 0 and theirs["operating_point"]["enrolled_samples"] == 0


def test_admin_keys_create_and_revoke_only_their_merchants_keys(api):
    merchant = _merchant_b(api)
    r = api.client.post("/v1/api_keys", json={"name": "lane 2", "scope": "terminal"},
                        headers=api.auth("b_admin"))
    assert r.status_code == 201, r.text
    assert r.json()["merchant"] == merchant
    assert authenticate(api.state.db, r.json()["secret"]).merchant == merchant
    a_key = api.client.post("/v1/api_keys", json={"name": "a", "scope": "kiosk"},
                            headers=api.auth("admin")).json()
    assert a_key["merchant"] == DEFAULT_MERCHANT_ID
    assert_problem(api.client.delete(f"/v1/api_keys/{a_key['id']}", headers=api.auth("b_admin")),
                   404, "not_found")
    assert api.client.delete(f"/v1/api_keys/{a_key['id']}",
                             headers=api.auth("admin")).json()["revoked"] is True


def test_a_shopper_may_enroll_at_two_merchants(api):
    _merchant_b(api)
    at_a = api.enroll("ann", "visa")
    at_b = api.enroll("ann", "visa", key="b_kiosk")  # same palm, same card, other merchant
    assert at_a.status_code == 201 and at_b.status_code == 201, at_b.text
    assert_problem(api.enroll("ann", "mastercard", key="b_kiosk"), 409, "palm_already_enrolled")
    assert_problem(api.enroll("bob", "visa", key="b_kiosk"), 409, "duplicate_card")
    paid_b = api.pay("ann", key="b_terminal")
    assert paid_b.status_code == 201, paid_b.text
    assert paid_b.json()["customer"] == at_b.json()["id"]
    assert api.pay("ann").json()["customer"] == at_a.json()["id"]


def test_unenroll_needs_the_palm_and_the_card_digits(api):
    _merchant_b(api)
    ann = api.enroll("ann", "visa").json()  # card ends 4242
    assert api.enroll("bob", "mastercard").status_code == 201

    refused = [
        _unenroll(api, ann["id"], "bob", "4242"),            # another palm
        _unenroll(api, ann["id"], "ann", "4444"),            # wrong digits
        _unenroll(api, "cus_nope", "ann", "4242"),           # no such customer
        _unenroll(api, ann["id"], "ann", "4242", key="b_kiosk"),  # another merchant's kiosk
    ]
    bodies = [assert_problem(r, 422, "verification_failed") for r in refused]
    for body in bodies[1:]:
        assert {k: v for k, v in body.items() if k != "instance"} == {
            k: v for k, v in bodies[0].items() if k != "instance"}
    # the id alone no longer unenrolls from a kiosk
    assert_problem(api.client.delete(f"/v1/customers/{ann['id']}", headers=api.auth("kiosk")),
                   403, "forbidden")
    assert api.pay("ann").status_code == 201

    done = _unenroll(api, ann["id"], "ann", "4242")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "deleted" and done.json()["templates"] == 0
    assert_problem(api.pay("ann"), 422, "palm_not_recognised")
    assert api.pay("bob").status_code == 201
    # an admin (store operator) may still delete directly
    bob = api.pay("bob").json()["customer"]
    assert api.client.delete(f"/v1/customers/{bob}", headers=api.auth("admin")).status_code == 200


def test_failed_unenroll_proofs_lock_the_kiosk_out(api_factory):
    api = api_factory(unenroll_max_failures=2, unenroll_lockout_s=60)
    ann = api.enroll("ann", "visa").json()
    for _ in range(2):
        assert_problem(_unenroll(api, ann["id"], "ann", "0000"), 422, "verification_failed")
    locked = _unenroll(api, ann["id"], "ann", "4242")
    assert_problem(locked, 429, "too_many_attempts")
    assert 0 < int(locked.headers["Retry-After"]) <= 60
    api.clock.advance(seconds=61)
    assert _unenroll(api, ann["id"], "ann", "4242").status_code == 200


def test_upgrade_gives_existing_rows_to_the_default_merchant(db_url):
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0004_intents")
        now = datetime.now(UTC).replace(tzinfo=None)
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO api_keys (id, name, scope, prefix, secret_hash, created_at) "
                "VALUES ('key_old', 'old lane', 'terminal', 'pp_terminal_abcd', :h, :t)"),
                {"h": "0" * 64, "t": now})
            conn.execute(text(
                "INSERT INTO customers (id, name, status, consent_at, created_at) "
                "VALUES ('cus_old', 'Old Customer', 'active', :t, :t)"), {"t": now})
        upgrade(engine)
        with engine.connect() as conn:
            owners = {conn.scalar(text(f"SELECT merchant_id FROM {table}"))  # noqa: S608
                      for table in ("api_keys", "customers")}
            assert owners == {DEFAULT_MERCHANT_ID}
            assert conn.scalar(text("SELECT name FROM merchants")) == "Default merchant"
    finally:
        engine.dispose()


def test_webhook_endpoints_receive_only_their_merchants_events(api):
    b_merchant = _merchant_b(api)
    db = api.state.db
    at_a = create_endpoint(db, "http://127.0.0.1:9/a", allow_private=True).id
    at_b = create_endpoint(db, "http://127.0.0.1:9/b", merchant=b_merchant,
                           allow_private=True).id
    assert api.enroll("ann", "visa").status_code == 201
    assert api.enroll("bob", "mastercard", key="b_kiosk").status_code == 201
    with db.session(readonly=True) as s:
        rows = set(s.execute(select(Event.type, Event.merchant_id, WebhookDelivery.endpoint_id)
                             .join(WebhookDelivery, WebhookDelivery.event_id == Event.id)).all())
    assert rows == {("customer.created", DEFAULT_MERCHANT_ID, at_a),
                    ("customer.created", b_merchant, at_b)}
