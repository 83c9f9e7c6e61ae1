"""The sharded fan-out of ``scripts/shard_sim.py``: exact, narrowable, and refusing when short.

A gallery split over shard processes must answer every probe exactly as one index holding
everything (same top-1 customer, same code score); a gallery sharded by the last 4 phone digits
must answer a narrowed search from one shard; and a search with a shard down must be refused,
never answered from the shards that are left. Small galleries of synthetic templates at the
embedder's real sizes; no timing is asserted.
"""

from __future__ import annotations

from typing import Any

import pytest

from palmpay.embed import PalmEmbedder
from scripts.shard_sim import (
    BUCKETS,
    Cluster,
    GalleryModel,
    Layout,
    ShardUnavailable,
    baseline_index,
    baseline_within,
    phone_last4,
)

CUSTOMERS = 150
K = 20  # shortlist samples: smaller than the gallery, so the merge has something to cut


@pytest.fixture(scope="module")
def model() -> GalleryModel:
    embedder = PalmEmbedder()
    return GalleryModel(embedder.dim, embedder.code_bytes, per_identity=3)


@pytest.fixture(scope="module")
def one_index(model: GalleryModel) -> Any:
    return baseline_index(model, CUSTOMERS, None, 3)


def _probes(model: GalleryModel) -> list[tuple[int, Any, Any]]:
    genuine = [(c, *model.probe(c)) for c in range(0, CUSTOMERS, 15)]
    strangers = [(CUSTOMERS + j, *model.probe(CUSTOMERS + j)) for j in range(10)]
    return genuine + strangers


def _assert_exact(cluster: Cluster, model: GalleryModel, one_index: Any) -> None:
    for who, vector, code in _probes(model):
        top = one_index.search(vector, code, K)[0]
        merged = cluster.search(vector, code, K)
        assert (merged.customer, merged.score) == (int(top.identity), top.score), who
        assert merged.shards == tuple(range(cluster.layout.shards))


def test_three_shards_answer_what_one_index_answers(model: GalleryModel, one_index: Any
                                                    ) -> None:
    cluster = Cluster(Layout(3), model, CUSTOMERS)
    try:
        assert sum(s["samples"] for s in cluster.stats) == 3 * CUSTOMERS
        assert all(s["samples"] for s in cluster.stats)
        _assert_exact(cluster, model, one_index)
    finally:
        cluster.close()


def test_a_shard_down_refuses_the_search_instead_of_searching_less(
        model: GalleryModel, one_index: Any) -> None:
    cluster = Cluster(Layout(2), model, CUSTOMERS, timeout_s=30)
    try:
        _assert_exact(cluster, model, one_index)
        _, vector, code = _probes(model)[0]
        cluster.procs[1].kill()
        cluster.procs[1].join(10)
        with pytest.raises(ShardUnavailable):
            cluster.search(vector, code, K)
        with pytest.raises(ShardUnavailable):  # and stays refused
            cluster.search(vector, code, K)
    finally:
        cluster.close()


def test_sharding_by_the_last_4_digits_keeps_a_narrowed_search_on_one_shard(
        model: GalleryModel, one_index: Any) -> None:
    layout = Layout(3, "last4")
    buckets: dict[int, list[int]] = {}
    for who in range(CUSTOMERS):
        buckets.setdefault(phone_last4(who), []).append(who)
    assert all(len({layout.shard_of(c) for c in bucket}) == 1 for bucket in buckets.values())
    cluster = Cluster(layout, model, CUSTOMERS)
    try:
        for who in range(0, CUSTOMERS, 10):
            bucket = buckets[phone_last4(who)]
            code = model.probe(who)[1]
            answer = cluster.within(code, bucket)
            assert len(answer.shards) == 1
            assert (answer.customer, answer.score) == baseline_within(one_index, code, bucket)
            assert answer.customer == who
    finally:
        cluster.close()


def test_phone_digits_spread_over_every_bucket() -> None:
    digits = [phone_last4(c) for c in range(50_000)]
    assert min(digits) >= 0 and max(digits) < BUCKETS
    counts = [0] * BUCKETS
    for d in digits:
        counts[d] += 1
    assert max(counts) < 20  # mean 5 per bucket: no hot bucket from the hash
