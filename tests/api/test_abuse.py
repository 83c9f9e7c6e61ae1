"""Abuse controls, on SQLite and PostgreSQL, driven by the app's fake clock (no sleeps): rate
limits per key and per terminal (429 ``rate_limited`` with Retry-After, counters shared by every
app on the database), the terminal lock-out after unrecognised palms, and the growing back-off
of a client address that sends unknown API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from palmpay.api.ratelimit import SqlStorage
from palmpay.db import open_database
from tests.api.conftest import FakeClock, assert_problem

LOOSE = {"rate_limit_requests": "10000/minute", "rate_limit_payments": "10000/minute",
         "rate_limit_customers": "10000/minute"}


def _retry_after(response) -> int:
    wait = int(response.headers["Retry-After"])
    assert response.json()["retry_after"] == wait
    return wait


def test_sql_storage_counts_in_fixed_windows(db_url):
    db = open_database(db_url)
    clock = FakeClock()
    try:
        storage = SqlStorage(db, clock)
        assert storage.get("k") == 0 and storage.check()
        assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
        assert storage.get("k") == 3
        assert 59 <= storage.get_expiry("k") - clock().timestamp() <= 60
        clock.advance(seconds=61)
        assert storage.get("k") == 0 and storage.incr("k", 60) == 1  # a new window
        storage.clear("k")
        assert storage.get("k") == 0
    finally:
        db.dispose()


def test_payments_are_rate_limited_per_terminal(api_factory, empty_frames):
    api = api_factory(**{**LOOSE, "rate_limit_payments": "3/minute"})
    for _ in range(3):
        assert_problem(api.pay(frames=empty_frames), 422, "palm_not_found")
    limited = api.pay(frames=empty_frames)
    assert_problem(limited, 429, "rate_limited")
    assert 0 < _retry_after(limited) <= 60
    api.keys["lane2"] = api.new_key("terminal", "lane 2")
    assert_problem(api.pay(frames=empty_frames, key="lane2"), 422, "palm_not_found")
    api.clock.advance(seconds=61)
    assert_problem(api.pay(frames=empty_frames), 422, "palm_not_found")


def test_every_request_counts_towards_its_key(api_factory):
    api = api_factory(**{**LOOSE, "rate_limit_requests": "5/minute"})
    for _ in range(5):
        r = api.client.get("/v1/customers/cus_nope", headers=api.auth("kiosk"))
        assert_problem(r, 404, "customer_not_found")
    limited = api.client.get("/v1/customers/cus_nope", headers=api.auth("kiosk"))
    assert_problem(limited, 429, "rate_limited")
    assert api.client.get("/v1/status", headers=api.auth("admin")).status_code == 200


def test_customer_requests_have_their_own_limit(api_factory):
    api = api_factory(**{**LOOSE, "rate_limit_customers": "4/minute"})
    guesses = [api.client.get(f"/v1/customers/cus_guess{n}", headers=api.auth("kiosk"))
               for n in range(10)]
    assert [r.status_code for r in guesses] == [404] * 4 + [429] * 6


def test_counters_are_shared_by_every_app_on_the_database(api_factory, empty_frames):
    first = api_factory(**{**LOOSE, "rate_limit_payments": "2/minute"})
    second = api_factory(**{**LOOSE, "rate_limit_payments": "2/minute"})
    second.keys["terminal"] = first.keys["terminal"]  # one terminal, two API processes
    assert_problem(first.pay(frames=empty_frames), 422, "palm_not_found")
    assert_problem(second.pay(frames=empty_frames), 422, "palm_not_found")
    assert_problem(second.pay(frames=empty_frames), 429, "rate_limited")
    assert_problem(first.pay(frames=empty_frames), 429, "rate_limited")


def test_a_rate_limited_request_is_not_stored_for_its_idempotency_key(api_factory, empty_frames):
    api = api_factory(**{**LOOSE, "rate_limit_payments": "1/minute"})
    assert_problem(api.pay(frames=empty_frames), 422, "palm_not_found")
    retry = {"Idempotency-Key": "retry-me"}
    assert_problem(api.pay(frames=empty_frames, headers=retry), 429, "rate_limited")
    api.clock.advance(seconds=61)
    again = api.pay(frames=empty_frames, headers=retry)
    assert_problem(again, 422, "palm_not_found")  # executed now, not a replay of the 429
    assert "Idempotent-Replayed" not in again.headers


def test_unrecognised_palms_lock_the_terminal_out(api_factory):
    api = api_factory(**LOOSE, unrecognised_max_failures=3, unrecognised_lockout_s=120)
    assert api.enroll("ann", "visa").status_code == 201
    # a recognised payment starts the count again
    for _ in range(2):
        assert_problem(api.pay("stranger"), 422, "palm_not_recognised")
    assert api.pay("ann").status_code == 201
    for _ in range(3):
        assert_problem(api.pay("stranger"), 422, "palm_not_recognised")
    locked = api.pay("ann")  # even an enrolled palm, before its frames are analysed
    assert_problem(locked, 429, "too_many_attempts")
    assert 0 < int(locked.headers["Retry-After"]) <= 120
    api.keys["lane2"] = api.new_key("terminal", "lane 2")
    assert api.pay("ann", key="lane2").status_code == 201  # per terminal
    api.clock.advance(seconds=121)
    assert api.pay("ann").status_code == 201


def test_unknown_keys_back_off_for_a_growing_delay(api_factory):
    api = api_factory(**LOOSE, bad_key_max_failures=3, bad_key_backoff_s=10)
    bad = {"Authorization": "Bearer pp_terminal_" + "x" * 32}
    for _ in range(3):
        assert_problem(api.client.get("/v1/payments/pay_x", headers=bad), 401, "unauthorized")
    blocked = api.client.get("/v1/payments/pay_x", headers=bad)
    assert_problem(blocked, 429, "rate_limited")
    assert _retry_after(blocked) == 10
    # while blocked even a valid key from this address gets no answer about itself
    assert_problem(api.client.get("/v1/status", headers=api.auth("admin")), 429, "rate_limited")
    # no key at all is not a guess
    assert_problem(api.client.get("/v1/status"), 401, "unauthorized")
    api.clock.advance(seconds=11)
    assert api.client.get("/v1/status", headers=api.auth("admin")).status_code == 200
    for _ in range(3):
        assert_problem(api.client.get("/v1/payments/pay_x", headers=bad), 401, "unauthorized")
    again = api.client.get("/v1/payments/pay_x", headers=bad)
    assert _retry_after(again) == 20  # doubled
    api.clock.advance(seconds=21)
    assert api.client.get("/v1/status", headers=api.auth("admin")).status_code == 200


def test_expired_counters_are_purged(db_url):
    from palmpay.api.ratelimit import purge_counters

    db = open_database(db_url)
    clock = FakeClock()
    try:
        storage = SqlStorage(db, clock)
        storage.incr("old", 10)
        storage.incr("new", 1000)
        assert purge_counters(db, datetime.now(UTC) + timedelta(seconds=100)) == 1
        assert storage.get("new") == 1
    finally:
        db.dispose()
