"""palmpay.index: contiguous storage, tombstones and compaction, FAISS structures through one
factory string (training policy), memory-mapped load that still takes changes."""

from __future__ import annotations

import numpy as np
import pytest

from palmpay.index import PalmIndex, UnknownIdentityError
from palmpay.match import code_scores

DIM, CODE_BYTES = 32, 768
FACTORIES = ["Flat", "IVF8,Flat", "IVF8,PQ4x4", "PCAR16,IVF8,PQ4x4", "OPQ4_16,IVF8,PQ4x4", "HNSW8",
             "IVF8,PQ4x4,RFlat", "PCAR16,HNSW8", "PCAR16,PQ8x4fs,Refine(PCAR16,SQ8)"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _palms(n: int, seed: int = 3, samples: int = 3):
    rng = np.random.default_rng(seed)
    return {f"p{i:03d}": (_unit(rng.normal(size=(samples, DIM))),
                          rng.integers(0, 256, (samples, CODE_BYTES), dtype=np.uint8))
            for i in range(n)}


def _fill(index: PalmIndex, palms) -> PalmIndex:
    for who, (vectors, codes) in palms.items():
        index.add(who, vectors, codes)
    return index


def _exact_shortlist(palms, removed: set[str], vector: np.ndarray, k: int) -> dict[str, float]:
    """Brute force over the live samples: identities of the k nearest, best cosine each."""
    owners, cosines = [], []
    for who, (vectors, _) in palms.items():
        if who not in removed:
            owners += [who] * len(vectors)
            cosines += (vectors @ vector).tolist()
    order = np.argsort(-np.asarray(cosines), kind="stable")[:k]
    best: dict[str, float] = {}
    for i in order.tolist():
        best[owners[i]] = max(best.get(owners[i], -1.0), cosines[i])
    return best


def _same_shortlist(got: dict[str, float], want: dict[str, float]) -> None:
    assert list(got) == list(want)
    np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-5, atol=1e-6)


def test_removed_samples_never_come_back_and_the_rest_is_exact() -> None:
    palms = _palms(60)
    index = _fill(PalmIndex(DIM, CODE_BYTES, compact_share=1.0), palms)  # never compacts
    query = palms["p007"][0][0]
    # remove the identities nearest to the query: every first FAISS answer is a tombstone
    removed = set(list(_exact_shortlist(palms, set(), query, 40))[:12])
    for who in removed:
        assert index.remove(who) == 3
    assert len(index) == 3 * (60 - len(removed)) and index._dead == 3 * len(removed)
    for k in (1, 5, 50, 500):
        got = index.shortlist(query, k)
        assert not removed & set(got)
        _same_shortlist(got, _exact_shortlist(palms, removed, query, k))
    assert not removed & {m.identity for m in index.search(query, palms["p007"][1][0], 500)}
    with pytest.raises(UnknownIdentityError):
        index.rerank(palms["p007"][1][:1], [next(iter(removed))])


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat", "IVF8,PQ4x4",
                                     "PCAR16,PQ8x4fs,Refine(PCAR16,SQ8)"])
def test_compaction_renumbers_rows_and_keeps_every_answer(factory: str) -> None:
    palms = _palms(40)
    index = _fill(PalmIndex(DIM, CODE_BYTES, factory, compact_share=1.0, train_size=100), palms)
    assert index.is_trained
    for who in list(palms)[::3]:
        index.remove(who)
    probes = [(palms[w][0][1], palms[w][1][1]) for w in list(palms)[1::3]]
    before = [index.search(v, c, k=20) for v, c in probes]
    index.compact()
    assert index._dead == 0 and len(index._owner) == len(index) == index._faiss.ntotal
    assert [index.search(v, c, k=20) for v, c in probes] == before
    assert sorted(index._names) == index.identities  # unused identity numbers pruned
    index.add("p000", *palms["p000"])  # a removed identity enrolls again
    assert index.search(*(x[0] for x in palms["p000"]))[0].identity == "p000"


def test_compaction_starts_by_itself_past_the_share() -> None:
    palms = _palms(10)
    index = _fill(PalmIndex(DIM, CODE_BYTES, compact_share=0.25), palms)
    index.remove("p000")
    index.remove("p001")
    assert index._dead == 6
    index.remove("p002")  # 9 of 30 rows dead > 25 %
    assert index._dead == 0 and len(index._owner) == 21


def test_rerank_is_the_best_sample_of_each_identity_with_and_without_mask() -> None:
    palms = _palms(6, samples=4)
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 256, CODE_BYTES, dtype=np.uint8)
    clear = _fill(PalmIndex(DIM, CODE_BYTES), palms)
    masked = PalmIndex(DIM, CODE_BYTES, code_mask=mask)
    for who, (vectors, codes) in palms.items():
        masked.add(who, vectors, codes ^ mask)
    probes = np.stack([palms["p002"][1][1], palms["p004"][1][0], palms["p001"][1][3]])
    names = ["p004", "p000", "p002", "p001"]
    want = np.stack([code_scores(probes, palms[w][1], max_shift=clear.max_shift).max(axis=1)
                     for w in names], axis=1)
    np.testing.assert_array_equal(clear.rerank(probes, names), want)
    np.testing.assert_array_equal(masked.rerank(probes, names), want)
    assert clear.rerank(probes, []).shape == (3, 0)


@pytest.mark.parametrize("factory", FACTORIES)
def test_every_structure_is_exact_until_trained_then_finds_the_palm(factory: str) -> None:
    palms = _palms(150)
    flat = _fill(PalmIndex(DIM, CODE_BYTES), dict(list(palms.items())[:100]))
    index = PalmIndex(DIM, CODE_BYTES, factory, train_size=400, nprobe=8, ef_search=64)
    needs_training = not index.is_trained
    _fill(index, dict(list(palms.items())[:100]))  # 300 samples: below train_size
    assert index.is_trained == (not needs_training)
    if needs_training:  # the exact buffer answers like Flat
        for who in ("p003", "p050"):
            _same_shortlist(index.shortlist(palms[who][0][1], 30),
                            flat.shortlist(palms[who][0][1], 30))
    _fill(index, dict(list(palms.items())[100:]))  # 450 samples: trains by itself
    assert index.is_trained and len(index) == 450
    hits = sum(index.search(palms[w][0][2], palms[w][1][2], k=30)[0].identity == w
               for w in palms)
    assert hits >= 140  # coarse PQ codes may miss a few
    for who in list(palms)[:60]:
        index.remove(who)  # 180 of 450 rows: compacts
    assert index._dead < 180
    for who in list(palms)[:60]:
        assert who not in index.shortlist(palms[who][0][0], 50)
    assert index.search(palms["p120"][0][0], palms["p120"][1][0])[0].identity == "p120"


def test_train_explicitly_and_its_errors() -> None:
    palms = _palms(30)
    index = PalmIndex(DIM, CODE_BYTES, "IVF8,Flat", train_size=0)
    _fill(index, palms)
    assert not index.is_trained  # train_size 0: only on request
    with pytest.raises(ValueError, match="at least 8"):
        index.train(np.zeros((3, DIM), np.float32))
    assert not index.is_trained and len(index) == 90
    index.train(_unit(np.random.default_rng(0).normal(size=(200, DIM))))
    assert index.is_trained and len(index) == 90 and index._faiss.ntotal == 90
    with pytest.raises(RuntimeError, match="already trained"):
        index.train()
    flat = PalmIndex(DIM, CODE_BYTES, "Flat")
    flat.train()  # nothing to train: a no-op
    assert flat.is_trained


@pytest.mark.parametrize("factory", ["Flat", "IVF8,PQ4x4", "HNSW8", "IVF8,Flat",
                                     "PCAR16,PQ8x4fs,Refine(PCAR16,SQ8)"])
@pytest.mark.parametrize("mmap", [True, False])
def test_load_maps_the_files_and_still_takes_changes(tmp_path, factory: str, mmap: bool) -> None:
    palms = _palms(100)  # 300 samples
    index = PalmIndex(DIM, CODE_BYTES, factory, train_size=280, compact_share=1.0)
    _fill(index, palms)
    index.remove("p010")  # a tombstone is saved as one
    index.save(tmp_path / "idx")
    loaded = PalmIndex.load(tmp_path / "idx", mmap=mmap)
    assert loaded.factory == factory and loaded.options == index.options
    assert index.is_trained and loaded.is_trained and loaded.nprobe == index.nprobe
    assert len(loaded) == len(index) and loaded.identities == index.identities
    memory = loaded.memory()
    assert (memory.codes_mapped > 0) == mmap and memory.faiss_mapped == mmap
    for who in ("p003", "p040", "p010"):
        vector, code = palms[who][0][1], palms[who][1][1]
        assert loaded.search(vector, code, 20) == index.search(vector, code, 20)
    extra = _palms(1, seed=99)["p000"]
    loaded.add("newcomer", *extra)  # a mapped FAISS index is copied into memory first
    loaded.remove("p003")
    assert loaded.search(extra[0][0], extra[1][0])[0].identity == "newcomer"
    assert "p003" not in loaded.shortlist(palms["p003"][0][0], 50)
    assert loaded.memory().codes_mapped == memory.codes_mapped  # the map is not read in
    loaded.save(tmp_path / "idx")  # over the files it maps: renamed in, the maps stay valid
    again = PalmIndex.load(tmp_path / "idx", mmap=mmap)
    assert again.search(extra[0][0], extra[1][0]) == loaded.search(extra[0][0], extra[1][0])
    loaded.compact()
    assert loaded.search(extra[0][0], extra[1][0]) == again.search(extra[0][0], extra[1][0])


def test_sizes_and_views() -> None:
    palms = _palms(5)
    index = _fill(PalmIndex(DIM, CODE_BYTES), palms)
    memory = index.memory()
    assert memory.codes == 15 * CODE_BYTES and memory.faiss == 15 * DIM * 4
    assert index.nbytes == memory.resident >= memory.codes + memory.faiss
    index.remove("p001")
    assert index._samples_of["p002"] == [6, 7, 8] and "p001" not in index._samples_of
    np.testing.assert_array_equal(index._codes[7], palms["p002"][1][1])
    assert len(index._codes) == 12 and 4 not in index._codes
    assert index.sample_count("p001") == 0 and index.sample_count("p004") == 3


def test_old_factory_strings_and_format(tmp_path) -> None:
    assert PalmIndex(DIM, CODE_BYTES, "IDMap2,Flat").factory == "Flat"
    with pytest.raises(ValueError):
        PalmIndex(DIM, CODE_BYTES, "IDMap2")
    index = _fill(PalmIndex(DIM, CODE_BYTES), _palms(2))
    index.save(tmp_path / "idx")
    meta = tmp_path / "idx" / "index.json"
    meta.write_text(meta.read_text().replace('"format": 2', '"format": 1'))
    with pytest.raises(ValueError, match="format"):
        PalmIndex.load(tmp_path / "idx")


def test_a_pca_layer_keeps_inner_product_rankings() -> None:
    """FAISS's PCA subtracts the mean from queries and samples: with vectors sharing a large
    mean that reorders cosines. The index trains it uncentred, so a full-rank PCA is exact."""
    rng = np.random.default_rng(4)
    mean = rng.normal(size=DIM)
    palms = {f"p{i:03d}": (_unit(mean + 0.3 * rng.normal(size=(3, DIM))),
                           rng.integers(0, 256, (3, CODE_BYTES), dtype=np.uint8))
             for i in range(120)}
    flat = _fill(PalmIndex(DIM, CODE_BYTES), palms)
    pca = _fill(PalmIndex(DIM, CODE_BYTES, f"PCAR{DIM},Flat", train_size=300), palms)
    assert pca.is_trained
    for who in list(palms)[::7]:
        query = _unit(palms[who][0][0] + 0.05 * rng.normal(size=DIM))
        _same_shortlist(pca.shortlist(query, 20), flat.shortlist(query, 20))
