from __future__ import annotations

import numpy as np
import pytest

from palmpay.index import DEFAULT_FACTORY, PalmIndex, UnknownIdentityError

DIM, CODE_BYTES = 32, 768  # 32x32 cells x 6 bits, the committed model's code size


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _flip(code: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(code)
    flip = rng.random(bits.size) < fraction
    return np.packbits(bits ^ flip.astype(np.uint8))


@pytest.fixture()
def enrolled():
    rng = np.random.default_rng(7)
    index = PalmIndex(DIM, CODE_BYTES)
    palms = {}
    for name in ("alice", "bob", "carol", "dave"):
        vectors = _unit(rng.normal(size=(3, DIM)))
        codes = rng.integers(0, 256, size=(3, CODE_BYTES), dtype=np.uint8)
        index.add(name, vectors, codes)
        palms[name] = (vectors, codes)
    return index, palms, rng


def test_search_ranks_the_true_palm_first(enrolled):
    index, palms, rng = enrolled
    vectors, codes = palms["carol"]
    probe_vector = _unit(vectors[1] + 0.05 * rng.normal(size=DIM))
    probe_code = _flip(codes[1], 0.1, rng)
    matches = index.search(probe_vector, probe_code, k=50)
    assert matches[0].identity == "carol"
    assert matches[0].score > 0.85
    assert all(m.score < 0.65 for m in matches[1:])
    assert matches[0].vector_score > 0.9
    assert len(index) == 12 and index.identities == ["alice", "bob", "carol", "dave"]


def test_shortlist_limits_rescored_identities(enrolled):
    index, palms, rng = enrolled
    vectors, codes = palms["bob"]
    matches = index.search(vectors[0], codes[0], k=1)
    assert [m.identity for m in matches] == ["bob"]
    assert matches[0].score == pytest.approx(1.0)


def test_remove_and_errors(enrolled):
    index, palms, _ = enrolled
    assert index.remove("alice") == 3
    assert "alice" not in {m.identity for m in index.search(*_first(palms["alice"]), k=50)}
    with pytest.raises(UnknownIdentityError):
        index.remove("alice")
    with pytest.raises(ValueError, match="matching"):
        index.add("eve", np.zeros((2, DIM), np.float32), np.zeros((1, CODE_BYTES), np.uint8))
    assert PalmIndex(DIM, CODE_BYTES).search(*_first(palms["bob"])) == []


def test_save_load_round_trip(enrolled, tmp_path):
    index, palms, _ = enrolled
    index.remove("dave")
    index.save(tmp_path / "idx")
    loaded = PalmIndex.load(tmp_path / "idx")
    assert loaded.factory == DEFAULT_FACTORY
    assert (tmp_path / "idx" / "index.json").read_text().count(DEFAULT_FACTORY) == 1
    probe = _first(palms["carol"])
    assert loaded.search(*probe) == index.search(*probe)
    loaded.add("erin", *(_first(palms["dave"])))
    assert loaded.search(*_first(palms["dave"]))[0].identity == "erin"


def _first(palm):
    vectors, codes = palm
    return vectors[0], codes[0]
