"""Enroll by palm photos, pay by palm frames, capture/cancel/refund, unenroll — over HTTP."""

from __future__ import annotations

from palmpay.payments.models import Customer, Payment
from tests.api.conftest import CARDS, assert_problem

CUSTOMER_KEYS = {"id", "object", "name", "status", "card", "templates", "created", "deleted",
                 "deleted_at"}
PAYMENT_KEYS = {"id", "object", "amount", "currency", "status", "capture_method",
                "amount_capturable", "amount_received", "amount_refunded", "customer",
                "customer_name", "payment_method", "decline_code", "created"}


def test_enroll_pay_capture_cancel_refund(api):
    r = api.enroll("ann", "visa")
    assert r.status_code == 201, r.text
    customer = r.json()
    assert set(customer) == CUSTOMER_KEYS
    assert customer["object"] == "customer" and customer["id"].startswith("cus_")
    assert customer["card"] == {"token": customer["card"]["token"], "brand": "visa",
                                "last4": "4242", "exp_month": 12, "exp_year": 2031}
    assert 3 <= customer["templates"] <= 4 and customer["status"] == "active"  # blurred: skipped
    assert CARDS["visa"] not in r.text

    r = api.pay("ann", 1250)
    assert r.status_code == 201, r.text
    paid = r.json()
    assert set(paid) == PAYMENT_KEYS
    assert paid["status"] == "succeeded" and paid["customer"] == customer["id"]
    assert paid["customer_name"] == customer["name"]
    assert paid["amount_received"] == 1250 and paid["currency"] == "eur"
    assert paid["payment_method"] == {"brand": "visa", "last4": "4242",
                                      "token": customer["card"]["token"]}

    # Manual capture: hold, capture part, refund part.
    r = api.pay("ann", 3000, capture_method="manual")
    held = r.json()
    assert r.status_code == 201 and held["status"] == "requires_capture"
    assert held["amount_capturable"] == 3000
    r = api.client.post(f"/v1/payments/{held['id']}/capture", json={"amount": 2000},
                        headers=api.auth("terminal"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded" and r.json()["amount_received"] == 2000
    r = api.client.post("/v1/refunds", json={"payment": held["id"], "amount": 500},
                        headers=api.auth("terminal"))
    assert r.status_code == 201, r.text
    refund = r.json()
    assert refund["object"] == "refund" and refund["amount"] == 500
    assert refund["payment"] == held["id"] and refund["id"].startswith("re_")
    r = api.client.get(f"/v1/refunds/{refund['id']}", headers=api.auth("terminal"))
    assert r.status_code == 200 and r.json() == refund
    r = api.client.post("/v1/refunds", json={"payment": held["id"], "amount": 5000},
                        headers=api.auth("terminal"))
    assert_problem(r, 422, "amount_too_large")
    r = api.client.get(f"/v1/payments/{held['id']}", headers=api.auth("terminal"))
    assert r.json()["amount_refunded"] == 500

    # Cancel a hold; capturing it afterwards is a state conflict.
    held = api.pay("ann", 700, capture_method="manual").json()
    r = api.client.post(f"/v1/payments/{held['id']}/cancel", headers=api.auth("terminal"))
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    r = api.client.post(f"/v1/payments/{held['id']}/capture", headers=api.auth("terminal"))
    assert_problem(r, 409, "payment_unexpected_state")

    # Payments are private to the terminal that took them (admin sees all).
    other = api.new_key("terminal", "lane 2")
    r = api.client.get(f"/v1/payments/{paid['id']}", headers={"Authorization": f"Bearer {other}"})
    assert_problem(r, 404, "payment_not_found")
    r = api.client.get(f"/v1/payments/{paid['id']}", headers=api.auth("admin"))
    assert r.status_code == 200 and r.json()["id"] == paid["id"]
    assert api.state.service.check_ledger().ok


def test_unknown_and_deleted_palms_get_the_same_answer(api, monkeypatch):
    ann = api.enroll("ann", "visa").json()
    api.enroll("bob", "mastercard")
    lookups = []
    real = api.state.service.get_customer
    monkeypatch.setattr(api.state.service, "get_customer",
                        lambda cid, *a: lookups.append(cid) or real(cid, *a))

    stranger = api.pay("stranger")
    body_unknown = assert_problem(stranger, 422, "palm_not_recognised")
    assert len(lookups) == 1

    r = api.client.delete(f"/v1/customers/{ann['id']}", headers=api.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "deleted" and r.json()["deleted"] and r.json()["templates"] == 0
    lookups.clear()
    deleted = api.pay("ann")
    body_deleted = assert_problem(deleted, 422, "palm_not_recognised")
    assert len(lookups) == 1
    assert body_deleted == body_unknown  # same keys, same values: nothing tells them apart
    assert api.pay("bob").status_code == 201  # others still pay

    # Even if the index still held the deleted customer (a race), the answer is the same.
    api.state.palms.add(ann["id"], _templates(api, "ann"))
    lookups.clear()
    assert api.pay("ann").json() == body_unknown and len(lookups) == 1

    r = api.client.get(f"/v1/customers/{ann['id']}", headers=api.auth("admin"))
    assert r.status_code == 200 and r.json()["status"] == "deleted"
    r = api.client.delete(f"/v1/customers/{ann['id']}", headers=api.auth("admin"))
    assert_problem(r, 409, "customer_deleted")
    r = api.client.get("/v1/customers/cus_nope", headers=api.auth("kiosk"))
    assert_problem(r, 404, "customer_not_found")


def _templates(api, who):
    from palmpay.api.images import decode_image

    images = [decode_image(b, f"i{n}", "", api.settings) for n, b in enumerate(
        api.hands[who].enroll)]
    return api.state.palms.enroll(images)


def test_declines_are_402_problems_with_the_failed_payment(api):
    assert api.enroll("cat", "declined").status_code == 201
    assert api.enroll("dan", "insufficient").status_code == 201

    r = api.pay("cat")
    body = assert_problem(r, 402, "card_declined")
    assert body["payment"].startswith("pay_") and body["decline_code"] == "card_declined"
    failed = api.client.get(f"/v1/payments/{body['payment']}", headers=api.auth("terminal"))
    assert failed.json()["status"] == "failed"

    body = assert_problem(api.pay("dan"), 402, "insufficient_funds")
    assert body["decline_code"] == "insufficient_funds"
    assert api.client.get("/problems/card_declined").status_code == 200


def test_enrollment_refusals_write_nothing(api, empty_frames):
    # Luhn failure: the number is neither echoed nor logged.
    bad = "4242424242424241"
    r = api.enroll("ann", bad)
    assert_problem(r, 422, "invalid_card")
    assert bad not in r.text
    # No consent, or anything but "true".
    assert_problem(api.enroll("ann", consent=None), 422, "consent_required")
    assert_problem(api.enroll("ann", consent="false"), 422, "consent_required")
    # Too few usable palms: each file's reason is listed.
    images = [api.hands["ann"].enroll[0], *empty_frames]
    body = assert_problem(api.enroll("ann", images=images), 422, "palm_not_found")
    assert body["required"] == 3 and body["usable"] == 1
    assert [i["status"] for i in body["images"]] == ["ok", "no_hand", "no_hand", "no_hand"]
    assert body["images"][1] == {"image": "images[1]", "filename": "ann1.png",
                                 "status": "no_hand", "reason": "no hand in frame"}
    # Validation errors name fields without echoing values.
    r = api.enroll("ann", exp_month="thirteen")
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["field"] == "exp_month" and "thirteen" not in r.text
    assert CARDS["visa"] not in r.text
    assert api.count(Customer) == 0 and api.state.palms.customers == 0

    # The same palm cannot be enrolled twice (even with another card).
    assert api.enroll("ann", "visa").status_code == 201
    r = api.enroll("ann", "amex")
    body = assert_problem(r, 409, "palm_already_enrolled")
    assert "cus_" not in r.text  # the other customer is not revealed
    assert api.count(Customer) == 1
    # The same card cannot either.
    assert_problem(api.enroll("bob", "visa"), 409, "duplicate_card")
    assert api.count(Customer) == 1 and api.count(Payment) == 0


def test_checkout_without_a_palm(api, empty_frames):
    api.enroll("ann")
    body = assert_problem(api.pay(frames=empty_frames), 422, "palm_not_found")
    assert body["usable"] == 0 and len(body["images"]) == 3
    assert api.count(Payment) == 0


def test_capture_analyze(api, empty_frames):
    for scope in ("kiosk", "terminal"):
        r = api.client.post("/v1/capture/analyze", headers=api.auth(scope),
                            files={"image": ("f.png", api.hands["ann"].enroll[0], "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ok"] and body["roi_status"] == "ok" and body["handedness"] == "right"
        assert len(body["landmarks"]) == 21 and body["quality"]["problems"] == []
        assert body["width"] == 640 and body["height"] == 480
    r = api.client.post("/v1/capture/analyze", headers=api.auth("kiosk"),
                        files={"image": ("e.jpg", empty_frames[0], "image/jpeg")})
    body = r.json()
    assert not body["ok"] and body["roi_status"] == "no_hand" and body["landmarks"] is None
    assert api.count(Customer) == 0


def test_health_and_openapi(api):
    r = api.client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok", "models_loaded": True,
                        "enrolled_palms": 0, "samples": 0}
    api.enroll("ann")
    assert api.client.get("/healthz").json()["enrolled_palms"] == 1
    spec = api.client.get("/openapi.json").json()
    assert {"/v1/customers", "/v1/payments", "/v1/refunds", "/v1/capture/analyze",
            "/v1/api_keys", "/v1/webhook_endpoints", "/healthz"} <= set(spec["paths"])
    assert api.client.get("/docs").status_code == 200


def test_index_is_rebuilt_from_the_database(api_factory):
    first = api_factory()
    ann = first.enroll("ann").json()
    second = api_factory()  # same database: the palm index comes back from the templates
    assert second.state.palms.customers == 1
    r = second.pay("ann")
    assert r.status_code == 201 and r.json()["customer"] == ann["id"]
