"""The synthetic gallery and session-noise model of the search benchmarks.

Random unit vectors are nearly orthogonal, which real CompCode vectors are not, so gallery
vectors are ``normalise(m + z)`` with a common mean ``m`` and a decaying per-axis spectrum, and
queries are enrolled vectors moved, mostly within the same directions, to an exact cosine from
the original. The model and how its constants were fitted: the docstring of ``scripts/bench.py``.
"""

from __future__ import annotations

import numpy as np

from palmpay.embed import PalmEmbedder
from palmpay.index import PalmIndex

SAMPLES_PER_IDENTITY = 5
#: Fitted to compcode.onnx vectors of the Tongji sessions: common mean norm, total variance, and
#: the variance of the i-th axis (1-based) proportional to (i + offset) ** -power, for palms and
#: for session-to-session noise.
MEAN_NORM = 0.344
TOTAL_VARIANCE = 0.882
GALLERY_SPECTRUM = (20.0, 1.8)
NOISE_SPECTRUM = (300.0, 4.0)
#: Query cosine ranges to the enrolled original, for the recall experiment.
QUERY_COSINES = {"0.8-0.9": (0.8, 0.9), "0.5-0.7": (0.5, 0.7)}


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def spectrum_scale(dim: int, offset: float, power: float) -> np.ndarray:
    """Per-axis standard deviations, variance ∝ (i + offset) ** -power, unit total variance."""
    variance = (np.arange(1, dim + 1, dtype=np.float64) + offset) ** -power
    return np.sqrt(variance / variance.sum())


def gallery_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors from the gallery model (float32)."""
    scale = spectrum_scale(dim, *GALLERY_SPECTRUM) * np.sqrt(TOTAL_VARIANCE)
    mean = unit_rows(np.random.default_rng(12345).standard_normal((1, dim)))[0] * MEAN_NORM
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        out[start:stop] = unit_rows(mean + rng.standard_normal((stop - start, dim)) * scale)
    return out


def noisy_queries(vectors: np.ndarray, cosines: tuple[float, float], rng: np.random.Generator,
                  structured: bool = True) -> np.ndarray:
    """Each row moved to a cosine drawn uniformly in ``cosines`` from itself, as a second session
    of the same palm: noise from the session-noise spectrum (``structured``) or isotropic, with
    its component along the row removed so the cosine is exact."""
    noise = rng.standard_normal(vectors.shape)
    if structured:
        noise *= spectrum_scale(vectors.shape[1], *NOISE_SPECTRUM)
    noise -= np.sum(noise * vectors, axis=1, keepdims=True) * vectors
    noise = unit_rows(noise)
    c = rng.uniform(*cosines, size=(len(vectors), 1))
    return unit_rows(c * vectors + np.sqrt(1.0 - c * c) * noise)


def build_gallery(n: int, embedder: PalmEmbedder, rng: np.random.Generator
                  ) -> tuple[PalmIndex, np.ndarray, np.ndarray]:
    """A ``PalmIndex`` with ``n`` synthetic samples, 5 per identity; also its vectors/codes."""
    vectors = gallery_vectors(n, embedder.dim, rng)
    codes = rng.integers(0, 256, (n, embedder.code_bytes), dtype=np.uint8)
    index = PalmIndex(embedder.dim, embedder.code_bytes, max_shift=embedder.max_shift)
    for start in range(0, n, SAMPLES_PER_IDENTITY):
        stop = start + SAMPLES_PER_IDENTITY
        index.add(f"id{start // SAMPLES_PER_IDENTITY:06d}", vectors[start:stop],
                  codes[start:stop])
    return index, vectors, codes
