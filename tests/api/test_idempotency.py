"""Idempotency-Key: replay, conflicts, stored errors, expiry, released 5xx."""

from __future__ import annotations

from palmpay.api.idempotency import purge_expired, request_hash
from palmpay.api.models import IdempotencyKey
from palmpay.payments.models import Payment
from tests.api.conftest import assert_problem


def test_replay_returns_the_stored_payment(api):
    api.enroll("ann")
    first = api.pay("ann", 1250, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = api.pay("ann", 1250, headers={"Idempotency-Key": "order-1"})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert api.count(Payment) == 1

    # Same key, different body: conflict, nothing executed.
    r = api.pay("ann", 999, headers={"Idempotency-Key": "order-1"})
    assert_problem(r, 409, "idempotency_conflict")
    # ... or a different endpoint.
    r = api.client.post(f"/v1/payments/{first.json()['id']}/cancel",
                        headers=api.auth("terminal", **{"Idempotency-Key": "order-1"}))
    assert_problem(r, 409, "idempotency_conflict")
    # Keys belong to one API key: another terminal's "order-1" is a new request.
    other = api.new_key("terminal", "lane 2")
    r = api.client.post("/v1/payments", data={"amount": "1250", "currency": "eur"},
                        files=[("frames", ("f.jpg", b, "image/jpeg"))
                               for b in api.hands["ann"].probe],
                        headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "order-1"})
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"]
    assert api.count(Payment) == 2
    # Without a key every POST executes.
    assert api.pay("ann", 1250).json()["id"] != first.json()["id"]
    # JSON endpoints too.
    pid = first.json()["id"]
    r1 = api.client.post("/v1/refunds", json={"payment": pid, "amount": 100},
                         headers=api.auth("terminal", **{"Idempotency-Key": "refund-1"}))
    r2 = api.client.post("/v1/refunds", json={"payment": pid, "amount": 100},
                         headers=api.auth("terminal", **{"Idempotency-Key": "refund-1"}))
    assert r1.status_code == r2.status_code == 201 and r1.json() == r2.json()
    assert r2.headers["idempotent-replayed"] == "true"
    assert api.client.get(f"/v1/payments/{pid}", headers=api.auth("admin")).json()[
        "amount_refunded"] == 100
    # A malformed key is a validation problem.
    r = api.pay("ann", headers={"Idempotency-Key": "x" * 300})
    assert_problem(r, 422, "validation_error")


def test_business_errors_are_stored_and_replayed(api):
    api.enroll("cat", "declined")
    first = api.pay("cat", headers={"Idempotency-Key": "k1"})
    body = assert_problem(first, 402, "card_declined")
    again = api.pay("cat", headers={"Idempotency-Key": "k1"})
    assert again.headers["idempotent-replayed"] == "true"
    assert assert_problem(again, 402, "card_declined") == body
    assert api.count(Payment) == 1  # one failed payment, not two


def test_server_errors_release_the_key(api, monkeypatch):
    api.enroll("ann")
    service = api.state.service
    real = service.authorize
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "authorize", flaky)
    assert_problem(api.pay("ann", headers={"Idempotency-Key": "k"}), 500, "internal_error")
    assert api.count(IdempotencyKey) == 0
    r = api.pay("ann", headers={"Idempotency-Key": "k"})
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert len(calls) == 2 and api.count(Payment) == 1


def test_keys_expire_after_the_ttl(api):
    api.enroll("ann")
    first = api.pay("ann", headers={"Idempotency-Key": "daily"}).json()
    api.clock.advance(hours=23)
    assert api.pay("ann", headers={"Idempotency-Key": "daily"}).json()["id"] == first["id"]
    api.clock.advance(hours=2)  # 25 h: the key is gone, the request runs again
    second = api.pay("ann", headers={"Idempotency-Key": "daily"})
    assert second.status_code == 201 and "idempotent-replayed" not in second.headers
    assert second.json()["id"] != first["id"]
    assert api.count(Payment) == 2 and api.count(IdempotencyKey) == 1
    # The purge (run by the dispatcher thread) deletes what has expired.
    assert purge_expired(api.state.db, api.clock()) == 0
    api.clock.advance(hours=25)
    assert purge_expired(api.state.db, api.clock()) == 1
    assert api.count(IdempotencyKey) == 0


def test_request_hash_ignores_the_multipart_boundary():
    def form(boundary: str) -> tuple[str, bytes]:
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n1250\r\n"
                f"--{boundary}--\r\n").encode()
        return f"multipart/form-data; boundary={boundary}", body

    a, b = form("aaaa1111"), form("bbbb2222")
    assert request_hash("POST", "/v1/payments", *a) == request_hash("POST", "/v1/payments", *b)
    assert request_hash("POST", "/v1/payments", *a) != request_hash("POST", "/v1/refunds", *a)
    assert request_hash("POST", "/p", "application/json", b"{}") != request_hash(
        "POST", "/p", "application/json", b"{ }")


def test_secrets_are_not_stored_for_replay(api):
    headers = api.auth("admin", **{"Idempotency-Key": "new-key"})
    first = api.client.post("/v1/api_keys", json={"name": "lane 9", "scope": "terminal"},
                            headers=headers)
    again = api.client.post("/v1/api_keys", json={"name": "lane 9", "scope": "terminal"},
                            headers=headers)
    assert first.json()["secret"].startswith("pp_terminal_")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == {**first.json(), "secret": None}  # one key, secret shown once
    with api.state.db.session(readonly=True) as session:
        stored = session.query(IdempotencyKey).one().response_body
    assert first.json()["secret"].encode() not in stored
