"""Idempotency-Key claims whose owner died are recovered at once (in-process app).

The crash itself is in ``test_crash.py`` (real processes, kill -9); here a claim is put in the
state a crash leaves — ``in_progress``, its owner a stopped instance — and the retry is checked.
``idempotency_wait_s`` is 5 s: a retry that waited for the claim instead of recovering it would
answer 409 ``idempotency_conflict`` (the dead owner never finishes), so a 201 is the proof that
it did not wait.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from palmpay.api.models import IdempotencyKey
from palmpay.db import new_id, utcnow
from palmpay.payments.models import Customer, Payment, ServiceInstance
from tests.api.conftest import assert_problem


def _dead_owner(api) -> str:
    now = utcnow()
    owner = new_id("ins")
    with api.state.db.session() as s:
        s.add(ServiceInstance(id=owner, hostname="gone", pid=1, started_at=now,
                              heartbeat_at=now, lease_expires_at=now, stopped_at=now))
    return owner


def _crash_state(api, owner: str, **values) -> None:
    """Every key back to what a crash before the response was stored leaves."""
    with api.state.db.session() as s:
        s.execute(update(IdempotencyKey).values(
            state="in_progress", response_status=None, response_body=None,
            response_content_type=None, owner_id=owner, **values))


def _key(api) -> IdempotencyKey:
    with api.state.db.session(readonly=True) as s:
        return s.query(IdempotencyKey).one()


def test_the_committed_payment_is_linked_and_answered(api_factory):
    api = api_factory(idempotency_wait_s=5)
    api.enroll("ann")
    first = api.pay("ann", headers={"Idempotency-Key": "sale-1"})
    assert first.status_code == 201
    row = _key(api)  # linked in the payment's own transaction
    assert (row.result_type, row.result_id, row.owner_id) == (
        "payment", first.json()["id"], api.state.service.instances.id)
    _crash_state(api, _dead_owner(api))
    retry = api.pay("ann", headers={"Idempotency-Key": "sale-1"})
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    body = retry.json()
    assert body["id"] == first.json()["id"] and body["customer_name"] == "Ann"
    assert {k: v for k, v in body.items() if k != "liveness"} == {
        k: v for k, v in first.json().items() if k != "liveness"}
    assert api.count(Payment) == 1 and _key(api).state == "done"
    assert api.state.service.check_ledger().ok


def test_a_committed_decline_answers_the_decline(api_factory):
    api = api_factory(idempotency_wait_s=5)
    api.enroll("ann", card="declined")
    first = api.pay("ann", headers={"Idempotency-Key": "sale-d"})
    body = assert_problem(first, 402, "card_declined")
    _crash_state(api, _dead_owner(api))
    retry = api.pay("ann", headers={"Idempotency-Key": "sale-d"})
    again = assert_problem(retry, 402, "card_declined")
    assert again["payment"] == body["payment"] and api.count(Payment) == 1


def test_nothing_committed_runs_again(api_factory):
    api = api_factory(idempotency_wait_s=5)
    api.enroll("ann")
    first = api.pay("ann", headers={"Idempotency-Key": "sale-2"})
    # As if the process died before anything committed: no result linked to the key.
    _crash_state(api, _dead_owner(api), result_type=None, result_id=None)
    retry = api.pay("ann", headers={"Idempotency-Key": "sale-2"})
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert retry.json()["id"] != first.json()["id"]
    row = _key(api)
    assert row.owner_id == api.state.service.instances.id and row.result_id == retry.json()["id"]


def test_a_live_owner_is_still_waited_for(api_factory):
    api = api_factory(idempotency_wait_s=0.3)
    api.enroll("ann")
    api.pay("ann", headers={"Idempotency-Key": "sale-3"})
    now = utcnow()
    with api.state.db.session() as s:  # another host, lease running
        s.add(ServiceInstance(id="ins_live", hostname="elsewhere", pid=1, started_at=now,
                              heartbeat_at=now, lease_expires_at=now + timedelta(hours=1)))
    _crash_state(api, "ins_live")
    assert_problem(api.pay("ann", headers={"Idempotency-Key": "sale-3"}), 409,
                   "idempotency_conflict")
    assert api.count(Payment) == 1


def test_the_committed_customer_is_answered(api_factory):
    api = api_factory(idempotency_wait_s=5)
    first = api.enroll("bob", headers={"Idempotency-Key": "enrol-1"})
    assert first.status_code == 201
    assert (_key(api).result_type, _key(api).result_id) == ("customer", first.json()["id"])
    _crash_state(api, _dead_owner(api))
    retry = api.enroll("bob", headers={"Idempotency-Key": "enrol-1"})
    assert retry.status_code == 201 and retry.json() == first.json()
    assert api.count(Customer) == 1


def test_a_server_error_after_the_commit_keeps_the_payment(api, monkeypatch):
    """Before: a 5xx released the key even when the payment had committed, and the retry
    charged the shopper again."""
    api.enroll("ann")
    service = api.state.service
    real = service.authorize

    def commits_then_fails(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("connection reset after the commit")

    monkeypatch.setattr(service, "authorize", commits_then_fails)
    assert_problem(api.pay("ann", headers={"Idempotency-Key": "k"}), 500, "internal_error")
    monkeypatch.setattr(service, "authorize", real)
    retry = api.pay("ann", headers={"Idempotency-Key": "k"})
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
    assert api.count(Payment) == 1
