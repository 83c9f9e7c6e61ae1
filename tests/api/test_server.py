"""Against a real uvicorn server on 127.0.0.1: one Idempotency-Key, 50 concurrent payments."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from palmpay.api.keys import create_api_key
from palmpay.api.threaded import serve_in_thread
from palmpay.payments.models import Customer, Payment
from tests.api.conftest import CARDS, make_app, make_settings

CONCURRENT = 50


@pytest.fixture
def server(db_url, tmp_path, models):
    settings = make_settings(db_url, tmp_path, max_upload_bytes=2_000_000)
    app = make_app(settings, models)
    with serve_in_thread(app, limit_concurrency=200) as base:
        yield base, app


def test_concurrent_requests_with_one_key_execute_once(server, hands):
    base, app = server
    state = app.state.palmpay
    kiosk = create_api_key(state.db, "kiosk", "kiosk")[1]
    terminal = create_api_key(state.db, "terminal", "terminal")[1]
    with httpx.Client(base_url=base, timeout=60) as client:
        r = client.post(
            "/v1/customers", headers={"Authorization": f"Bearer {kiosk}"},
            data={"name": "Ann", "card_number": CARDS["visa"], "exp_month": "12",
                  "exp_year": "2031", "consent": "true"},
            files=[("images", (f"{n}.png", b, "image/png")) for n, b in
                   enumerate(hands["ann"].enroll)])
        assert r.status_code == 201, r.text

    frames = [("frames", (f"{n}.jpg", b, "image/jpeg")) for n, b in
              enumerate(hands["ann"].probe)]
    barrier = threading.Barrier(CONCURRENT)

    def pay(_):
        with httpx.Client(base_url=base, timeout=60) as client:
            barrier.wait()
            return client.post("/v1/payments", data={"amount": "4200", "currency": "eur"},
                               files=frames, headers={"Authorization": f"Bearer {terminal}",
                                                      "Idempotency-Key": "checkout-77"})

    with ThreadPoolExecutor(CONCURRENT) as pool:
        responses = list(pool.map(pay, range(CONCURRENT)))

    assert [r.status_code for r in responses] == [201] * CONCURRENT, {
        r.status_code: r.text for r in responses}
    assert len({r.json()["id"] for r in responses}) == 1
    replayed = [r.headers.get("idempotent-replayed") == "true" for r in responses]
    assert replayed.count(False) == 1
    with state.db.session(readonly=True) as session:
        assert session.query(Payment).count() == 1
    assert state.service.check_ledger().ok


def test_streamed_body_over_the_limit_gets_413(server):
    base, app = server
    kiosk = create_api_key(app.state.palmpay.db, "kiosk", "kiosk")[1]
    sent = []
    boundary = b"palmpayboundary"

    def body():  # chunked (no Content-Length): the server has to count
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="images"; ' \
              b'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        for _ in range(40):
            sent.append(1)
            yield b"\0" * 65536

    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/v1/customers", content=body(), headers={
            "Authorization": f"Bearer {kiosk}",
            "Content-Type": "multipart/form-data; boundary=" + boundary.decode()})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "payload_too_large"
    with app.state.palmpay.db.session(readonly=True) as session:
        assert session.query(Customer).count() == 0
