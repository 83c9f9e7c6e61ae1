"""palmpay.decision and the live path's use of it: fusion equals the pre-refactor algorithm, and
each probe frame is shortlisted once and each (frame, identity) pair re-ranked once."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from palmpay import assets
from palmpay.capture import Frame
from palmpay.config import Settings
from palmpay.decision import NO_PALM, decide, fuse
from palmpay.embed import Template
from palmpay.index import PalmIndex
from palmpay.match import code_scores
from palmpay.pipeline import Analysis
from palmpay.recognizer import Presentation, Recognizer
from palmpay.roi import RoiResult, RoiStatus

DIM, CODE_BYTES = 32, 768


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _flip(code: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(code)
    return np.packbits(bits ^ (rng.random(bits.size) < fraction).astype(np.uint8))


class CountingIndex(PalmIndex):
    """Records every shortlist query and every (probe code, identity) pair re-ranked."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.shortlists: list[bytes] = []
        self.pairs: Counter[tuple[bytes, str]] = Counter()

    def shortlist(self, vector, k=50):
        self.shortlists.append(np.asarray(vector).tobytes())
        return super().shortlist(vector, k)

    def rerank(self, codes, identities):
        for code in np.asarray(codes).reshape(-1, self.code_bytes):
            for who in identities:
                self.pairs[(code.tobytes(), who)] += 1
        return super().rerank(codes, identities)


@pytest.fixture()
def gallery():
    rng = np.random.default_rng(5)
    index = CountingIndex(DIM, CODE_BYTES)
    palms = {}
    for n in range(8):
        vectors = _unit(rng.normal(size=(3, DIM)))
        codes = rng.integers(0, 256, size=(3, CODE_BYTES), dtype=np.uint8)
        index.add(f"p{n}", vectors, codes)
        palms[f"p{n}"] = (vectors, codes)
    return index, palms, rng


def _probes(palms, who, rng, n=3, noise=0.6):
    vectors, codes = palms[who]
    return [Template(_unit(vectors[i % 3] + noise * rng.normal(size=DIM)),
                     _flip(codes[i % 3], 0.15, rng)) for i in range(n)]


def _reference(index: PalmIndex, templates, k):
    """The fusion as written before the refactor: search every template, re-score the union."""
    candidates = set()
    for t in templates:
        candidates.update(m.identity for m in index.search(t.vector, t.code, k))
    owners, rows = [], []
    for who in sorted(candidates):
        for sample in index._samples_of[who]:
            owners.append(who)
            rows.append(index._codes[sample])
    scores = code_scores(np.stack([t.code for t in templates]), np.stack(rows),
                         max_shift=index.max_shift)
    owner_array = np.asarray(owners)
    fused = {who: float(scores[:, owner_array == who].max(axis=1).mean())
             for who in sorted(candidates)}
    best = max(fused, key=fused.__getitem__)
    return best, fused[best]


class ScriptedPipeline:
    """Stands in for :class:`palmpay.pipeline.Pipeline`: frame i gives templates[i] (None: no
    hand)."""

    def __init__(self, templates):
        self.templates = templates
        # the bundled model's calibration: the recognizer's operating point reads open_set
        meta = json.loads((assets.path("models") / "compcode.json").read_text())
        self.embedder = SimpleNamespace(meta=meta, path="compcode.onnx")

    def reset(self) -> None:
        pass

    def template(self, image, track=False):
        t = self.templates[int(image)]
        if t is None:
            return Analysis(RoiResult(RoiStatus.NO_HAND, "no hand"), None)
        return Analysis(RoiResult(RoiStatus.OK, "ok", roi=np.zeros((128, 128), np.uint8)),
                        None, t)


def test_fuse_is_the_mean_of_best_scores_and_ties_sort_first():
    assert fuse([{"b": 0.9, "a": 0.5}, {"b": 0.5, "a": 0.7}]) == ("b", pytest.approx(0.7))
    assert fuse([{"b": 0.6, "a": 0.6}])[0] == "a"
    assert fuse([]) == (None, 0.0) and fuse([{}]) == (None, 0.0)


def test_decide_against_the_threshold():
    assert decide("a", 0.8, 0.8).decision == "match" and decide("a", 0.8, 0.8).matched
    unknown = decide("a", 0.79, 0.8)
    assert (unknown.decision, unknown.identity, unknown.score) == ("unknown", None, 0.79)
    assert decide(None, 0.0, 0.5).decision == "unknown"
    assert (NO_PALM.decision, NO_PALM.identity, NO_PALM.score) == ("no_palm", None, None)


@pytest.mark.parametrize("k", [1, 4, 50])
def test_identify_equals_the_previous_fusion_and_scores_each_frame_once(gallery, k):
    index, palms, rng = gallery
    recognizer = Recognizer(Settings(shortlist_k=k), index=index, pipeline=ScriptedPipeline([]))
    for who in ("p2", "p5"):
        templates = _probes(palms, who, rng, n=5)
        expected = _reference(index, templates, k)
        index.shortlists.clear()
        index.pairs.clear()
        assert recognizer.identify(templates) == expected
        assert len(index.shortlists) == len(templates)
        assert set(index.pairs.values()) == {1}


def test_replay_shortlists_each_good_frame_once_and_fuses_as_before(gallery):
    index, palms, rng = gallery
    settings = Settings(shortlist_k=4, presentation_frames=3, presentation_gap=2)
    probes = _probes(palms, "p3", rng, n=4)
    script = [None, probes[0], probes[1], probes[2], probes[3], None, None]
    recognizer = Recognizer(settings, index=index, pipeline=ScriptedPipeline(script))
    items = list(recognizer.replay(Frame(i, i / 15, i) for i in range(len(script))))
    [presentation] = [i for i in items if isinstance(i, Presentation)]
    frames = [i for i in items if not isinstance(i, Presentation)]
    assert len(index.shortlists) == 4  # every good frame, once (the 4th only for its `best`)
    assert set(index.pairs.values()) == {1}  # no (frame, identity) pair scored twice
    best, score = _reference(index, probes[:3], 4)
    assert presentation.good_frames == (1, 2, 3)
    assert presentation.score == score
    assert presentation.identity == (best if score >= recognizer.threshold else None)
    for result, t in zip(frames[1:5], probes, strict=True):
        assert result.best == index.search(t.vector, t.code, 4)[0]
