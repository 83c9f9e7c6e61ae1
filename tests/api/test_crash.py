"""kill -9 at every commit point of a payment and an enrollment, then retry with the same key.

A real uvicorn process on SQLite and on PostgreSQL (``tests/api/crashkit.py``), killed by
``PALMPAY_FAULT_POINT`` at: the authorisation intent committed; the acquirer authorised and
captured; the payment committed; the response stored under its Idempotency-Key; a new customer
committed. After each kill a clean server starts and the same request is retried with the same
key. The server waits ``idempotency_wait_s`` = 1 h for a running claim and the client gives up
long before, so a retry that answered did not wait for the dead request: it recovered it.

For every point: the retry answers 201 with the sale's one payment (or customer); a second
retry replays the same object; the acquirer holds exactly one captured authorisation for the
sale; there is one payment row; no authorisation is left at the acquirer without a payment row;
the ledger check passes. About 6 s per point and backend (two server starts each), ~80 s in
all: marked slow (``make test`` and CI run it; ``make test-fast`` does not).
"""

from __future__ import annotations

import pytest

from tests.api.crashkit import ENROLL_POINT, PAYMENT_POINTS, CrashBench


@pytest.fixture
def bench(db_url, tmp_path, hands):
    bench = CrashBench(db_url, tmp_path, {n: h.enroll for n, h in hands.items()},
                       {n: h.probe for n, h in hands.items()})
    bench.setup("ann")
    yield bench
    bench.stop()


@pytest.mark.slow
def test_a_kill_at_any_commit_point_never_charges_twice(bench: CrashBench) -> None:
    results = [bench.sale(point) for point in PAYMENT_POINTS]
    results.append(bench.sale(ENROLL_POINT, who="bob"))
    for r in results:
        assert r.exit_code == 137, r
        assert r.retry_status == 201, r
        assert r.retry_id and r.second_retry_same, r
        assert r.payments == 1, r  # payment rows for the sale, or customers enrolled
        assert r.orphans == 0, r
        assert r.ledger_ok, r
    for r in results[:-1]:
        assert r.charges == 1, r
    assert results[-1].charges == 0  # enrollment charges nothing
    # Once the response is stored, the retry is a plain replay; before, it is recovered from
    # what committed (a replay too) or, when nothing had, run again.
    by_point = {r.point: r for r in results}
    assert not by_point["payment.after_intent"].retry_replayed
    for point in ("payment.after_acquirer", "payment.after_commit", "idempotency.after_store",
                  ENROLL_POINT):
        assert by_point[point].retry_replayed, by_point[point]
