"""The open-set narrowing flow past N_safe (forced by ``n_safe``), on SQLite and PostgreSQL:
enroll with phone digits; pay without them → 428 ``narrowing_required``; with them → approved;
wrong digits → the same ``palm_not_recognised`` as an unknown palm; repeated wrong tries lock
the terminal out (429 with Retry-After) until the lock-out expires."""

from __future__ import annotations

from sqlalchemy import select

from palmpay.payments.models import Customer
from tests.api.conftest import assert_problem


def test_status_shows_the_operating_point(api_factory):
    api = api_factory()
    r = api.client.get("/v1/status", headers=api.auth("admin"))
    assert r.status_code == 200, r.text
    empty = r.json()
    assert empty["object"] == "status" and empty["customers"] == 0
    point = empty["operating_point"]
    assert point["enrolled_samples"] == 0 and point["narrowing_required"] is False
    assert point["target_fpir"] == api.settings.target_fpir and point["n_safe"] > 0
    assert api.enroll("ann", "visa").status_code == 201
    grown = api.client.get("/v1/status", headers=api.auth("admin")).json()["operating_point"]
    assert grown["enrolled_samples"] >= 3
    assert grown["threshold"] > point["threshold"]  # a bigger gallery needs a higher threshold
    assert_problem(api.client.get("/v1/status", headers=api.auth("terminal")), 403, "forbidden")


def test_past_n_safe_a_payment_needs_the_phone_digits(api_factory):
    api = api_factory(n_safe=0, narrowing_max_failures=3, narrowing_lockout_s=60)
    r = api.enroll("ann", "visa", phone_last4="4321")
    assert r.status_code == 201, r.text
    ann = r.json()["id"]
    assert api.enroll("bob", "mastercard", phone_last4="1234").status_code == 201
    with api.state.db.session(readonly=True) as s:
        hashes = list(s.scalars(select(Customer.phone_hash)))
    assert all(h and len(h) == 64 and "4321" not in h for h in hashes)  # keyed hash only
    assert api.client.get("/v1/status", headers=api.auth("admin")).json()[
        "operating_point"]["narrowing_required"] is True

    body = assert_problem(api.pay("ann"), 428, "narrowing_required")
    assert body["narrowing"] == "phone_last4"

    r = api.pay("ann", phone_last4="4321")
    assert r.status_code == 201, r.text
    assert r.json()["customer"] == ann and r.json()["status"] == "succeeded"

    # Wrong digits (bob's, and digits nobody has) answer exactly like an unknown palm.
    unknown = assert_problem(api.pay("stranger", phone_last4="4321"), 422, "palm_not_recognised")
    for digits in ("1234", "0000"):
        wrong = assert_problem(api.pay("ann", phone_last4=digits), 422, "palm_not_recognised")
        assert {k: v for k, v in wrong.items() if k != "instance"} == {
            k: v for k, v in unknown.items() if k != "instance"}
    # three wrong tries in a row: locked out, even with the right digits
    locked = api.pay("ann", phone_last4="4321")
    assert_problem(locked, 429, "too_many_attempts")
    assert int(locked.headers["Retry-After"]) > 0
    other_terminal = api.new_key("terminal", "lane 2")
    api.keys["lane2"] = other_terminal
    assert api.pay("ann", phone_last4="4321", key="lane2").status_code == 201  # per terminal
    api.clock.advance(seconds=61)
    assert api.pay("ann", phone_last4="4321").status_code == 201


def test_digits_are_validated(api_factory):
    api = api_factory(n_safe=0)
    assert_problem(api.enroll("ann", "visa", phone_last4="12a4"), 422, "validation_error")
    assert_problem(api.enroll("ann", "visa", phone_last4="123"), 422, "validation_error")
    assert_problem(api.pay("ann", phone_last4="12345"), 422, "validation_error")


def test_below_n_safe_the_palm_alone_pays(api_factory):
    api = api_factory()  # N_safe from the tail model: millions of samples
    assert api.enroll("ann", "visa", phone_last4="4321").status_code == 201
    assert api.pay("ann").status_code == 201
    assert api.pay("ann", phone_last4="4321").status_code == 201  # digits narrow anyway
    assert_problem(api.pay("ann", phone_last4="9999"), 422, "palm_not_recognised")
