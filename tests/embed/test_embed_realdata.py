"""Real-data check: Tongji sessions protocol (s2 vs s1, all image pairs) with compcode.onnx."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from palmpay import metrics
from palmpay.config import Settings
from palmpay.embed import PalmEmbedder, code_scores

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[2].parent / "shared" / "data" / "tongji-dev"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real dataset {DATA} is absent"),
]


def _load_sessions():
    spec = importlib.util.spec_from_file_location("calibrate", REPO / "models" / "calibrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_sessions(DATA)


@pytest.fixture(scope="module")
def tongji():
    embedder = PalmEmbedder(Settings(intra_op_threads=0), path=REPO / "models" / "compcode.onnx")
    gallery, gallery_labels, probes, probe_labels = _load_sessions()
    gv, gc = embedder.embed_many(gallery)
    pv, pc = embedder.embed_many(probes)
    return embedder, gv, gc, gallery_labels, pv, pc, probe_labels


def test_sessions_code_eer(tongji) -> None:
    embedder, _, gc, gl, _, pc, pl = tongji
    scores = code_scores(pc, gc, embedder.max_shift)
    mated = pl[:, None] == gl[None, :]
    assert mated.sum() == 30_000 and (~mated).sum() == 8_970_000
    assert metrics.eer(scores[~mated], scores[mated]) <= 0.003
    far, _ = metrics.far_frr(scores[~mated], scores[mated], embedder.threshold)
    assert far <= embedder.meta["far"]


def test_vector_shortlist_recall(tongji) -> None:
    _, gv, _, gl, pv, _, pl = tongji
    sims = pv @ gv.T
    top = np.argsort(-sims, axis=1)[:, :50]
    recall = np.mean((gl[top] == pl[:, None]).any(axis=1))
    assert recall >= 0.99
