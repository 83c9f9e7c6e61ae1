"""compcode.onnx + palmpay.embed: model I/O and templates (scored with :mod:`palmpay.match`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from palmpay.config import Settings
from palmpay.embed import BITS_PER_CELL, PalmEmbedder, Template
from palmpay.match import code_scores

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "compcode.onnx"


def _texture(seed: int, size: int = 192) -> np.ndarray:
    """Smooth random texture with line-like structure at palm-line scale (uint8)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(size, size)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 2.5)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return (40 + 170 * tex).astype(np.uint8)


def _crop(tex: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
    return np.ascontiguousarray(tex[32 + dy : 160 + dy, 32 + dx : 160 + dx])


@pytest.fixture(scope="module")
def embedder() -> PalmEmbedder:
    return PalmEmbedder(Settings(intra_op_threads=1), path=MODEL)


def test_model_io(embedder: PalmEmbedder) -> None:
    inp = embedder.session.get_inputs()[0]
    assert inp.name == "roi"
    assert inp.shape[1:] == [1, 128, 128]
    x = np.zeros((2, 1, 128, 128), np.float32)
    code, sign, vector = embedder.session.run(["code", "sign", "vector"], {"roi": x})
    grid = embedder.grid
    assert code.shape == (2, *grid) and code.dtype == np.int64
    assert sign.shape == (2, BITS_PER_CELL, *grid) and sign.dtype == np.uint8
    assert vector.shape == (2, embedder.dim)
    assert 256 <= embedder.dim <= 2048
    assert MODEL.stat().st_size < 200_000


def test_template_shapes_and_norm(embedder: PalmEmbedder) -> None:
    t = embedder.embed(_crop(_texture(1)))
    assert isinstance(t, Template)
    assert t.vector.dtype == np.float32 and t.vector.shape == (embedder.dim,)
    assert abs(float(np.linalg.norm(t.vector)) - 1.0) < 1e-5
    assert t.code.dtype == np.uint8 and t.code.shape == (embedder.code_bytes,)
    assert embedder.code_bytes == embedder.grid[0] * embedder.grid[1] * BITS_PER_CELL // 8


def test_deterministic_and_batch_independent(embedder: PalmEmbedder) -> None:
    rois = [_crop(_texture(s)) for s in range(5)]
    v1, c1 = embedder.embed_many(rois, batch_size=2)
    v2, c2 = embedder.embed_many(rois, batch_size=64)
    np.testing.assert_allclose(v1, v2, atol=1e-6)
    np.testing.assert_array_equal(c1, c2)
    single = embedder.embed(rois[3])
    np.testing.assert_array_equal(single.code, c1[3])
    np.testing.assert_allclose(np.linalg.norm(v1, axis=1), 1.0, atol=1e-5)


def test_grey_level_invariance(embedder: PalmEmbedder) -> None:
    roi = _crop(_texture(7))
    brighter = (0.8 * roi.astype(np.float32) + 30).astype(np.uint8)
    a, b = embedder.embed(roi), embedder.embed(brighter)
    assert code_scores(a.code, b.code)[0, 0] > 0.9


def test_rejects_bad_roi(embedder: PalmEmbedder) -> None:
    with pytest.raises(ValueError):
        embedder.embed(np.zeros((128, 128), np.float32))
    with pytest.raises(ValueError):
        embedder.embed(np.zeros((64, 128), np.uint8))


def test_code_scores_identical_shifted_unrelated(embedder: PalmEmbedder) -> None:
    tex = _texture(11)
    other = _texture(12)
    base = embedder.embed(_crop(tex)).code
    shifted = embedder.embed(_crop(tex, dy=8, dx=-4)).code  # 2 × 1 code cells
    unrelated = embedder.embed(_crop(other)).code
    s = code_scores(base, np.stack([base, shifted, unrelated]), max_shift=3)[0]
    assert s[0] == pytest.approx(1.0)
    assert s[1] > 0.9
    assert 0.4 < s[2] < 0.65
    no_search = code_scores(base, shifted[None], max_shift=0)[0, 0]
    assert no_search < s[1] - 0.2


def test_calibration_meta(embedder: PalmEmbedder) -> None:
    meta = json.loads(MODEL.with_suffix(".json").read_text())
    assert embedder.meta == meta
    assert meta["score"] == "code" and meta["model"] == MODEL.name
    assert 0.5 < embedder.threshold < 1.0
    assert embedder.max_shift == meta["max_shift"]


def test_rebuild_reproduces_committed_model() -> None:
    pytest.importorskip("onnx")
    spec = importlib.util.spec_from_file_location(
        "build_compcode", REPO / "models" / "build_compcode.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = module.build_model().SerializeToString(deterministic=True)
    assert data == MODEL.read_bytes(), "rerun: python models/build_compcode.py"
