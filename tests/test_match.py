"""palmpay.match: the shift-tolerant code matcher against a naive reference, both paths."""

from __future__ import annotations

import numpy as np
import pytest

from palmpay.match import BITS_PER_CELL, POPCOUNT_MAX_PROBES, code_scores, unpack_codes


def _naive_scores(p: np.ndarray, g: np.ndarray, s: int) -> np.ndarray:
    pb, gb = unpack_codes(p) > 0, unpack_codes(g) > 0
    _, h, w, _ = pb.shape
    out = np.zeros((len(p), len(g)))
    for i in range(len(p)):
        centre = pb[i, s : h - s, s : w - s]
        for j in range(len(g)):
            best = 0.0
            for dy in range(-s, s + 1):
                for dx in range(-s, s + 1):
                    win = gb[j, s + dy : h - s + dy, s + dx : w - s + dx]
                    best = max(best, 1.0 - float(np.mean(centre != win)))
            out[i, j] = best
    return out


def test_code_scores_matches_naive_and_chunks() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(7, 16 * 16 * BITS_PER_CELL // 8), dtype=np.uint8)
    fast = code_scores(codes[:3], codes, max_shift=2)
    np.testing.assert_allclose(fast, _naive_scores(codes[:3], codes, 2), atol=1e-6)
    chunked = code_scores(codes[:3], codes, max_shift=2, chunk=2)
    np.testing.assert_array_equal(fast, chunked)
    assert fast.dtype == np.float32 and fast.shape == (3, 7)
    assert np.all((fast >= 0) & (fast <= 1))


def test_code_scores_errors() -> None:
    a = np.zeros((2, 768), np.uint8)
    with pytest.raises(ValueError):
        code_scores(a, np.zeros((2, 384), np.uint8))
    with pytest.raises(ValueError):
        code_scores(a, a, max_shift=16)
    with pytest.raises(ValueError):
        code_scores(a.astype(np.int16), a)


def test_popcount_and_blas_paths_agree() -> None:
    rng = np.random.default_rng(3)
    gallery = rng.integers(0, 256, size=(40, 768), dtype=np.uint8)
    probes = rng.integers(0, 256, size=(POPCOUNT_MAX_PROBES + 2, 768), dtype=np.uint8)
    probes[1] = gallery[5]
    blas = code_scores(probes, gallery)  # more probes than the popcount path takes
    one_by_one = np.vstack([code_scores(p, gallery) for p in probes])
    np.testing.assert_array_equal(blas, one_by_one)
    assert one_by_one[1, 5] == 1.0
