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
    """An HTTP receiver on 127.0.0.1 answering each event from a script of status codes.

    ``statuses`` maps an event type to the codes its successive attempts get (the last one
    repeats); ``"*"`` is the script for any other type. Scripts are per event, never per arrival,
    since the product promises no delivery order.
    """

    def __init__(self, statuses: dict[str, list[int]]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict, bytes, int]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event = json.loads(body)
                script = receiver.statuses.get(event["type"], receiver.statuses["*"])
                with receiver._lock:
                    n = sum(json.loads(b)["id"] == event["id"] for _, b, _ in receiver.requests)
                    status = script[min(n, len(script) - 1)]
                    receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def attempts(self) -> dict[str, list[tuple[int, dict]]]:
        """Per event type, the (status, event) of each attempt in arrival order."""
        with self._lock:
            out: dict[str, list[tuple[int, dict]]] = {}
            for _, body, status in self.requests:
                event = json.loads(body)
                out.setdefault(event["type"], []).append((status, event))
            return out

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
    # The receivers listen on 127.0.0.1: allowed only with webhook_allow_private (development).
    api = api_factory(webhook_backoff_s=0.1, webhook_poll_s=0.05, webhook_max_attempts=3,
                      webhook_allow_private=True)
    script = {"customer.created": [500, 200], "*": [200]}
    with Receiver(script) as good, Receiver({"*": [503]}) as down:
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

        # Events may arrive in any order. Per event: customer.created fails once (500) and is
        # retried until delivered; payment.succeeded is delivered at its first attempt.
        assert _wait(lambda: sum(s == 200 for _, _, s in good.requests) == 2), good.requests
        assert _wait(lambda: len(down.requests) == 6)  # 2 events × 3 attempts, then failed
        secret = endpoints[good]["secret"]
        for headers, body, _status in good.requests:
            verify(secret, headers["PalmPay-Signature"], body)
            with pytest.raises(SignatureError):
                verify(endpoints[down]["secret"], headers["PalmPay-Signature"], body)
            assert headers["PalmPay-Event-Id"] == json.loads(body)["id"]
        attempts = good.attempts()
        assert sorted(attempts) == ["customer.created", "payment.succeeded"]
        assert [s for s, _ in attempts["customer.created"]] == [500, 200]
        assert [s for s, _ in attempts["payment.succeeded"]] == [200]
        retried, created = attempts["customer.created"]
        assert retried[1] == created[1]  # a retry re-sends the same event, same id
        created = created[1]
        assert created["object"] == "event" and created["id"].startswith("evt_")
        assert created["data"]["object"]["id"] == customer["id"]
        assert created["data"]["object"]["card"]["last4"] == "4242"
        # Same shape as the API's payment; only the checkout response carries the shopper's name.
        succeeded = attempts["payment.succeeded"][0][1]
        assert succeeded["data"]["object"] == {**payment, "customer_name": None}
        assert {e["type"]: len(a) for e, a in
                ((a[0][1], a) for a in down.attempts().values())} == {
            "customer.created": 3, "payment.succeeded": 3}
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
