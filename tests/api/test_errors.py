"""Authentication scopes, problem+json for every error, request and image limits."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from palmpay.api.keys import revoke_api_key
from palmpay.api.limits import BodyLimitMiddleware
from palmpay.api.models import IdempotencyKey
from palmpay.payments.models import Customer, Payment
from tests.api.conftest import CARDS, assert_problem


def test_scopes(api):
    r = api.client.post("/v1/payments", data={"amount": "1", "currency": "eur"},
                        files={"frames": ("f.jpg", b"x", "image/jpeg")})
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = api.client.get("/v1/payments/pay_x", headers={"Authorization": "Bearer pp_terminal_nope"})
    assert_problem(r, 401, "unauthorized")
    r = api.client.get("/v1/payments/pay_x", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert_problem(r, 401, "unauthorized")

    # A kiosk key cannot pay, a terminal key cannot enroll or manage keys.
    assert_problem(api.pay("ann", key="kiosk"), 403, "forbidden")
    assert_problem(api.enroll("ann", key="terminal"), 403, "forbidden")
    r = api.client.post("/v1/api_keys", json={"name": "x", "scope": "admin"},
                        headers=api.auth("terminal"))
    assert_problem(r, 403, "forbidden")
    assert api.count(Customer) == 0

    # Admin creates a key over HTTP: the secret is shown once; revoked keys stop working.
    r = api.client.post("/v1/api_keys", json={"name": "lane 3", "scope": "terminal"},
                        headers=api.auth("admin"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("pp_terminal_") and len(created["secret"]) == 44
    assert created["prefix"] == created["secret"][:16]
    lane3 = {"Authorization": f"Bearer {created['secret']}"}
    assert_problem(api.client.get("/v1/payments/pay_x", headers=lane3), 404, "payment_not_found")
    r = api.client.delete(f"/v1/api_keys/{created['id']}", headers=api.auth("admin"))
    assert r.status_code == 200 and r.json()["revoked"] and r.json()["secret"] is None
    assert_problem(api.client.get("/v1/payments/pay_x", headers=lane3), 401, "unauthorized")
    # The database holds a hash, never the secret.
    revoke_api_key(api.state.db, created["id"])
    with api.state.db.engine.connect() as conn:
        dump = repr(conn.exec_driver_sql("SELECT * FROM api_keys").fetchall())
    assert created["secret"] not in dump and api.keys["admin"] not in dump


def test_routing_and_validation_problems(api):
    assert_problem(api.client.get("/v1/nothing"), 404, "not_found")
    r = api.client.put("/v1/payments", headers=api.auth("terminal"))
    assert_problem(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]
    r = api.client.post("/v1/refunds", json={"payment": 42, "amount": -1},
                        headers=api.auth("terminal"))
    body = assert_problem(r, 422, "validation_error")
    assert {e["field"] for e in body["errors"]} == {"payment", "amount"}
    assert all(set(e) == {"field", "message", "type"} for e in body["errors"])
    r = api.client.post("/v1/refunds", content=b"{not json", headers=api.auth(
        "terminal", **{"Content-Type": "application/json"}))
    assert_problem(r, 422, "validation_error")
    r = api.client.post("/v1/refunds", data={"payment": "pay_x"}, headers=api.auth("terminal"))
    assert_problem(r, 415, "unsupported_media_type")
    page = api.client.get("/problems/palm_not_recognised")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert api.client.get("/problems/no_such_code").status_code == 404


def test_internal_errors_reveal_nothing(api, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError(f"secret detail {CARDS['visa']}")

    monkeypatch.setattr(api.state.service, "get_payment", boom)
    # The exception stops at the app (TestClient would re-raise it otherwise).
    r = api.client.get("/v1/payments/pay_x", headers=api.auth("terminal"))
    body = assert_problem(r, 500, "internal_error")
    assert "secret" not in r.text and CARDS["visa"] not in r.text and "Traceback" not in r.text
    assert len(body["incident"]) == 32
    logged = [rec.getMessage() for rec in caplog.records if body["incident"] in rec.getMessage()]
    assert len(logged) == 1 and "RuntimeError" in logged[0] and CARDS["visa"] not in logged[0]


def test_images_are_checked(api, empty_frames):
    png = api.hands["ann"].enroll[0]
    files = [("images", ("a.png", png, "image/png")),
             ("images", ("broken.png", png[: len(png) // 3], "image/png"))]
    data = {"name": "Ann", "card_number": CARDS["visa"], "exp_month": "12", "exp_year": "2031",
            "consent": "true"}
    r = api.client.post("/v1/customers", data=data, files=files, headers=api.auth("kiosk"))
    body = assert_problem(r, 422, "invalid_image")
    assert body["image"] == "images[1]" and body["filename"] == "broken.png"
    assert "broken.png" in body["detail"]

    # A text file is not an image whatever its declared type; JSON is not multipart.
    r = api.pay(frames=[b"hello, I am a text file\n" * 10])
    body = assert_problem(r, 415, "unsupported_media_type")
    assert body["image"] == "frames[0]"
    r = api.client.post("/v1/payments", json={"amount": 100, "currency": "eur"},
                        headers=api.auth("terminal"))
    assert_problem(r, 415, "unsupported_media_type")
    r = api.client.post("/v1/customers", json=data, headers=api.auth("kiosk"))
    assert_problem(r, 415, "unsupported_media_type")
    assert api.count(Customer) == 0 and api.count(Payment) == 0


def test_oversized_uploads_are_refused_before_anything_is_written(api_factory):
    api = api_factory(max_upload_bytes=1_000_000, max_image_bytes=200_000)
    big = api.hands["ann"].enroll  # ~0.5 MB PNGs: each over the per-image limit
    r = api.enroll("ann", images=big[:1])
    body = assert_problem(r, 413, "payload_too_large")
    assert body["image"] == "images[0]"
    r = api.enroll("ann", headers={"Idempotency-Key": "big-1"})  # 4 × 0.5 MB > 1 MB
    assert_problem(r, 413, "payload_too_large")
    assert api.count(Customer) == 0 and api.count(IdempotencyKey) == 0
    assert api.state.palms.customers == 0


def _run_asgi(app, chunks, headers):
    sent = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
             for i, c in enumerate(chunks)]

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/payments", "headers": headers}
    # A loop of its own in a thread of its own: the kiosk suite's Playwright (sync API) keeps an
    # event loop running in the main thread for the whole session, whatever the test order.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    return sent


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_body_limit_middleware(declared):
    consumed = []

    async def inner(scope, receive, send):
        while True:  # reads everything, like a form parser
            message = await receive()
            consumed.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"created"})

    app = BodyLimitMiddleware(inner, max_bytes=1000)
    chunks = [b"x" * 400] * 10
    headers = [(b"content-length", b"4000")] if declared else []
    sent = _run_asgi(app, chunks, headers)
    assert sent[0]["status"] == 413
    body = json.loads(sent[1]["body"])
    assert body["code"] == "payload_too_large" and body["limit"] == 1000
    # Content-Length: refused unread; chunked: the app never sees more than the limit.
    assert sum(consumed) == (0 if declared else 800)
    assert _run_asgi(app, [b"x" * 400] * 2, [])[0]["status"] == 201


def test_every_payment_error_code_has_a_problem_page(api):
    from palmpay.api.errors import CATALOGUE

    for code, entry in CATALOGUE.items():
        r = api.client.get(f"/problems/{code}")
        assert r.status_code == 200 and f"HTTP status: {entry.status}" in r.text, code
