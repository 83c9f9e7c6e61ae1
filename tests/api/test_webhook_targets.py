"""Webhook SSRF: endpoints may only point at public internet addresses, checked at registration
and again before every delivery (DNS rebinding), and a delivery connects to the address it
checked.

Found by the attack: an endpoint ``http://127.0.0.1:<port>/internal`` was accepted and every
event POSTed to it. The receivers here are real HTTP servers on 127.0.0.1; only DNS is played
by a resolver function (the dispatcher's ``resolver`` seam), since staging a rebinding attack
needs a DNS server whose answer changes between two lookups.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from palmpay.api.egress import TargetRefused, address_problem, resolve_target
from palmpay.api.models import WebhookDelivery, WebhookEndpoint
from palmpay.api.webhooks import WebhookDispatcher, create_endpoint, record_event
from palmpay.config import Settings
from palmpay.db import Database, new_id, upgrade, utcnow
from palmpay.payments.errors import PaymentError
from tests.api.conftest import assert_problem
from tests.api.test_webhooks import Receiver, _wait

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:4700::6810:84e5"

REFUSED_URLS = [
    "http://127.0.0.1:8080/internal",
    "http://127.1/",
    "http://localhost:9000/",  # resolves (really) to loopback
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64 around 10.0.0.1
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # CGNAT
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",  # reserved
    "http://255.255.255.255/",
    "http://192.0.2.10/",  # documentation
    "https://palmpay-test.invalid/hook",  # does not resolve (RFC 6761)
    "http://[/",  # malformed
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_registration_refuses_non_public_targets(api, url):
    r = api.client.post("/v1/webhook_endpoints", json={"url": url}, headers=api.auth("admin"))
    body = assert_problem(r, 422, "webhook_url_refused")
    assert body["field"] == "url" and url not in r.text
    assert api.count(WebhookEndpoint) == 0


def test_public_targets_are_accepted(api):
    for url in (f"https://{PUBLIC_V4}/hooks", f"http://[{PUBLIC_V6}]:8443/x"):
        r = api.client.post("/v1/webhook_endpoints", json={"url": url},
                            headers=api.auth("admin"))
        assert r.status_code == 201, r.text
        assert r.json()["url"] == url


def test_development_setting_allows_private_targets(api_factory):
    api = api_factory(webhook_allow_private=True)
    r = api.client.post("/v1/webhook_endpoints", json={"url": "http://127.0.0.1:9/hook"},
                        headers=api.auth("admin"))
    assert r.status_code == 201, r.text


def test_address_rules():
    for address in (PUBLIC_V4, PUBLIC_V6, "8.8.8.8", "1.1.1.1"):
        assert address_problem(address) is None, address
    assert address_problem("127.0.0.1") == "loopback"
    assert address_problem("169.254.169.254") == "link-local"
    assert address_problem("10.0.0.1") == "private"
    assert address_problem("::ffff:10.0.0.1") is not None
    assert address_problem("not an ip") == "not an IP address"
    # Every address a name resolves to is checked, not only the first.
    with pytest.raises(TargetRefused, match="loopback"):
        resolve_target("https://hooks.example.com/",
                       resolver=lambda host, port: [PUBLIC_V4, "127.0.0.1"])
    target = resolve_target("https://hooks.example.com:8443/p?q=1",
                            resolver=lambda host, port: [PUBLIC_V6])
    assert target.pinned_url == f"https://[{PUBLIC_V6}]:8443/p?q=1"
    assert target.host_header == "hooks.example.com:8443"
    assert target.extensions == {"sni_hostname": "hooks.example.com"}


@pytest.fixture
def db(db_url):
    database = Database(db_url)
    upgrade(database.engine)
    yield database
    database.dispose()


class Dns:
    """Answers like a DNS server whose records the test changes (a rebinding attacker)."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.records:
            raise OSError("no such host")
        return self.records[host]


def _deliveries(db: Database) -> list[WebhookDelivery]:
    with db.session(readonly=True) as session:
        return list(session.scalars(select(WebhookDelivery)))


def _settings(**overrides) -> Settings:
    return Settings(webhook_backoff_s=60, webhook_timeout_s=5, **overrides)


def test_delivery_rechecks_the_address(db):
    """An endpoint stored before the check existed (or whose name now resolves inward) is
    refused at delivery time: the receiver on 127.0.0.1 gets nothing."""
    with Receiver({"*": [200]}) as receiver:
        with db.session() as session:
            session.add(WebhookEndpoint(id=new_id("we"), url=receiver.url, secret="whsec_x",
                                        enabled=True, created_at=utcnow()))
        record_event(db, "customer.created", {"id": "cus_1"})
        dispatcher = WebhookDispatcher(db, _settings())
        try:
            assert dispatcher.run_once() == 1
        finally:
            dispatcher.stop()
        assert receiver.requests == []
    [delivery] = _deliveries(db)
    assert delivery.state == "pending" and delivery.attempts == 1  # retried later, like a 5xx
    assert delivery.last_error == "refused: the host is (or resolves to) a loopback address"


def test_dns_rebinding_is_refused(db):
    """The name resolved to a public address at registration and to loopback at delivery."""
    dns = Dns({"hooks.example.com": [PUBLIC_V4]})
    with Receiver({"*": [200]}) as receiver:
        port = receiver.httpd.server_address[1]
        create_endpoint(db, f"http://hooks.example.com:{port}/hook", resolver=dns)
        dns.records["hooks.example.com"] = ["127.0.0.1"]  # rebinding
        record_event(db, "customer.created", {"id": "cus_1"})
        dispatcher = WebhookDispatcher(db, _settings(), resolver=dns)
        try:
            dispatcher.run_once()
        finally:
            dispatcher.stop()
        assert receiver.requests == []
    assert dns.lookups == ["hooks.example.com", "hooks.example.com"]  # registration, delivery
    assert _deliveries(db)[0].last_error.startswith("refused: ")
    with pytest.raises(PaymentError) as err:  # and a new registration is refused outright
        create_endpoint(db, f"http://hooks.example.com:{port}/hook", resolver=dns)
    assert err.value.code == "webhook_url_refused"


def test_delivery_connects_to_the_checked_address(db):
    """The request goes to the address the check resolved (no second lookup by the HTTP
    client that could answer differently), with the endpoint's own Host header."""
    dns = Dns({"hooks.palmpay-test.invalid": ["127.0.0.1"]})  # not resolvable by the system
    with Receiver({"*": [200]}) as receiver:
        port = receiver.httpd.server_address[1]
        url = f"http://hooks.palmpay-test.invalid:{port}/hook"
        create_endpoint(db, url, allow_private=True, resolver=dns)
        record_event(db, "customer.created", {"id": "cus_1"})
        dispatcher = WebhookDispatcher(db, _settings(webhook_allow_private=True), resolver=dns)
        try:
            dispatcher.run_once()
        finally:
            dispatcher.stop()
        assert _wait(lambda: len(receiver.requests) == 1)
        headers, _body, _status = receiver.requests[0]
    assert headers["Host"] == f"hooks.palmpay-test.invalid:{port}"
    assert _deliveries(db)[0].state == "delivered"


class Bouncer:
    """An HTTP server answering every POST with a 307 redirect to ``location``."""

    def __init__(self, location: str) -> None:
        self.hits = 0
        bouncer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                bouncer.hits += 1
                self.send_response(307)
                self.send_header("Location", location)
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


def test_redirects_are_not_followed(db):
    """A receiver answering 307 towards an internal address: the redirect is a failed attempt,
    never followed."""
    with Receiver({"*": [200]}) as internal, Bouncer(internal.url) as bouncer:
        create_endpoint(db, bouncer.url, allow_private=True)
        record_event(db, "customer.created", {"id": "cus_1"})
        dispatcher = WebhookDispatcher(db, _settings(webhook_allow_private=True))
        try:
            dispatcher.run_once()
        finally:
            dispatcher.stop()
        assert bouncer.hits == 1 and internal.requests == []
    assert _deliveries(db)[0].last_error == "HTTP 307"
