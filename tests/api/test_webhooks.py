"""Webhook signatures, and delivery with retries to a local receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from palmpay.api.models import Event, WebhookDelivery
from palmpay.api.webhooks import SignatureError, sign, verify
from tests.api.conftest import CARDS

SECRET = "whsec_test"


def test_sign_and_verify():
    body = b'{"id":"evt_1"}'
    header = sign(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, body, now=1_700_000_100) == 1_700_000_000
    assert verify(SECRET, header, body.decode(), now=1_700_000_000)  # str bodies too
    assert verify(SECRET, "v1=00," + header, body, now=1_700_000_000)  # any v1 may match
    for bad_header, bad_body, now in [
        (sign("whsec_other", 1_700_000_000, body), body, 1_700_000_000),  # forged
        (header, b'{"id":"evt_2"}', 1_700_000_000),  # tampered body
        (header, body, 1_700_000_301),  # stale
        (header, body, 1_699_999_699),  # from the future
        (header.replace("t=1700000000", "t=1700000001"), body, 1_700_000_000),  # moved time
        ("v1=" + header.split("v1=")[1], body, 1_700_000_000),  # no timestamp
        ("t=abc,v1=00", body, 1_700_000_000),
        ("", body, 1_700_000_000),
    ]:
        with pytest.raises(SignatureError):
            verify(SECRET, bad_header, bad_body, now=now)


class Receiver:
    """An HTTP receiver on 127.0.0.1 answering from a script of status codes."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict, bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                n = len(receiver.requests)
                status = receiver.statuses[min(n, len(receiver.statuses) - 1)]
                receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_events_are_delivered_signed_with_retries(api_factory):
    api = api_factory(webhook_backoff_s=0.1, webhook_poll_s=0.05, webhook_max_attempts=3)
    with Receiver([500, 200]) as good, Receiver([503]) as down:
        endpoints = {}
        for receiver in (good, down):
            r = api.client.post("/v1/webhook_endpoints", json={"url": receiver.url},
                                headers=api.auth("admin"))
            assert r.status_code == 201, r.text
            endpoints[receiver] = r.json()
            assert r.json()["secret"].startswith("whsec_") and r.json()["id"].startswith("we_")
        r = api.client.post("/v1/webhook_endpoints", json={"url": good.url},
                            headers=api.auth("kiosk"))
        assert r.status_code == 403

        customer = api.enroll("ann").json()
        payment = api.pay("ann", 1250).json()

        # customer.created fails once (500) then is delivered; payment.succeeded first time.
        assert _wait(lambda: sum(s == 200 for _, _, s in good.requests) == 2), good.requests
        assert _wait(lambda: len(down.requests) == 6)  # 2 events × 3 attempts, then failed
        secret = endpoints[good]["secret"]
        events = []
        for headers, body, status in good.requests:
            verify(secret, headers["PalmPay-Signature"], body)
            with pytest.raises(SignatureError):
                verify(endpoints[down]["secret"], headers["PalmPay-Signature"], body)
            event = json.loads(body)
            assert headers["PalmPay-Event-Id"] == event["id"]
            events.append((event["type"], status, event))
        assert [(t, s) for t, s, _ in events] == [
            ("customer.created", 500), ("customer.created", 200), ("payment.succeeded", 200)]
        created = events[1][2]
        assert created["object"] == "event" and created["id"].startswith("evt_")
        assert created["data"]["object"]["id"] == customer["id"]
        assert created["data"]["object"]["card"]["last4"] == "4242"
        # Same shape as the API's payment; only the checkout response carries the shopper's name.
        assert events[2][2]["data"]["object"] == {**payment, "customer_name": None}
        for _headers, body, _ in good.requests + down.requests:
            assert CARDS["visa"].encode() not in body

    with api.state.db.session(readonly=True) as session:
        rows = session.execute(select(WebhookDelivery)).scalars().all()
        assert session.query(Event).count() == 2
    by_endpoint = {}
    for row in rows:
        by_endpoint.setdefault(row.endpoint_id, []).append((row.state, row.attempts))
    assert sorted(by_endpoint[endpoints[good]["id"]]) == [("delivered", 1), ("delivered", 2)]
    assert by_endpoint[endpoints[down]["id"]] == [("failed", 3), ("failed", 3)]
