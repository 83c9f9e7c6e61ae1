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


def _shifted(code: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``code`` with its grid rolled by (dy, dx) cells (the same palm, moved)."""
    bits = unpack_codes(code[None]) > 0
    return np.packbits(np.roll(bits, (dy, dx), axis=(1, 2)).reshape(1, -1), axis=1)[0]


def _structured(rng: np.random.Generator, n: int, code_bytes: int) -> np.ndarray:
    """Codes with long runs (blobs of equal bits) and all-zero / all-one rows, where an off-by-
    one window or mask shows, unlike in uniform noise."""
    side = int(np.sqrt(code_bytes * 8 // BITS_PER_CELL))
    coarse = rng.integers(0, 2, size=(n, side // 4 + 1, side // 4 + 1, BITS_PER_CELL))
    bits = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :side, :side]
    codes = np.packbits(bits.reshape(n, -1).astype(np.uint8), axis=1)
    codes[0], codes[1] = 0, 255
    return codes


@pytest.mark.parametrize("code_bytes", [768, 192])  # 32x32 cells (3 words a row), 16x16 (1.5)
@pytest.mark.parametrize("max_shift", [0, 1, 2, 3])
def test_word_path_equals_loop_and_blas_paths(code_bytes: int, max_shift: int) -> None:
    from palmpay.match import _loop_scores, _word_scores

    rng = np.random.default_rng(max_shift * 1000 + code_bytes)
    for gallery in (rng.integers(0, 256, size=(37, code_bytes), dtype=np.uint8),
                    _structured(rng, 37, code_bytes)):
        probes = np.vstack([gallery[:2], rng.integers(0, 256, (1, code_bytes), np.uint8),
                            _shifted(gallery[5], 1, -1)[None]])
        many = np.vstack([probes] * (POPCOUNT_MAX_PROBES // len(probes) + 1))  # BLAS path
        for mask in (None, rng.integers(0, 256, code_bytes, dtype=np.uint8)):
            stored = gallery if mask is None else gallery ^ mask
            words = _word_scores(probes, stored, max_shift, None, mask, chunk=8)
            np.testing.assert_array_equal(words, _loop_scores(probes, stored, max_shift, None,
                                                              mask))
            blas = code_scores(many, stored, max_shift, mask=mask)[: len(probes)]
            np.testing.assert_array_equal(words, blas)
            np.testing.assert_array_equal(words, code_scores(probes, stored, max_shift,
                                                             mask=mask))
            # masked storage scores exactly as clear storage
            np.testing.assert_array_equal(words, code_scores(probes, gallery, max_shift))
            assert words[0, 0] == 1.0 and words[1, 1] == 1.0
            assert (words[3, 5] == 1.0) == (max_shift >= 1)


def test_word_path_edge_cases() -> None:
    rng = np.random.default_rng(11)
    gallery = rng.integers(0, 256, size=(5, 768), dtype=np.uint8)
    assert code_scores(gallery[:1], gallery[:0]).shape == (1, 0)
    one = code_scores(gallery[0], gallery[2])  # (B,) codes are P = G = 1
    assert one.shape == (1, 1) and one.dtype == np.float32
    with pytest.raises(ValueError):
        code_scores(gallery[:1], gallery.astype(np.int16))
    with pytest.raises(ValueError, match="mask"):
        code_scores(gallery[:1], gallery, mask=np.zeros(10, np.uint8))
