"""Synthetic distractors: rendered palm prints through the real embedder, and a fitted model.

A million real palms cannot be had, and a million rendered ones through the ONNX embedder cost
too long per run, so the gallery's distractors come in two kinds (both cached beside the real
templates, keyed by the model hash and :data:`VERSION`):

**rendered** (:func:`rendered_pool`): palm-print crease maps of :mod:`palmpay.synth`
(:func:`palmpay.synth.palmprint.palm_print`, one per synthetic identity) drawn straight at ROI
scale, shaded as skin (tone, line strength, mottling, grain, an illumination gradient, blur and
sensor noise; no CLAHE, like tongji's ROIs), :data:`SAMPLES` crops per identity with a little
rotation, scale and shift each, embedded by the real :class:`~palmpay.embed.PalmEmbedder`.
Vector and code of a sample come from one image, as for a real palm.

**model** (:func:`model_distractors`), for the bulk: vectors from a Gaussian fitted to the real
tongji gallery — an identity centre drawn with the covariance of the real palms' mean vectors, its
samples around it with the covariance of the real samples about their palm's mean (top
:data:`WITHIN_RANK` directions plus an isotropic rest), each normalised; codes patched together
from the rendered pool: each model identity takes each of the 4×4 blocks of 8×8 code cells from
a random rendered identity, sample *j* from that identity's sample *j* (so a model identity's
samples differ as rendered ones do). A model sample's vector and code are independent (the
vector only shortlists, the code decides). How both kinds compare with real impostors against
the real probes is measured by :func:`palmpay.bench.realism.compare`, not assumed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from palmpay.bench.gallery import TemplateSet
from palmpay.embed import PalmEmbedder

__all__ = ["SAMPLES", "VERSION", "VectorModel", "fit_vector_model", "model_distractors",
           "rendered_pool"]

log = logging.getLogger(__name__)

VERSION = "distractors-v1"
#: Samples (enrolled photos) per synthetic identity, rendered or model.
SAMPLES = 4
#: Within-palm directions of the vector model kept exactly; the rest is isotropic.
WITHIN_RANK = 256
_ROI = 128
_SCALE = 160.0  # canvas pixels per palm width: the ROI (0.8 palm widths) is 128 px
_CANVAS = 200
_CENTRE = (0.06, 0.02)  # ROI centre in canonical palm coordinates (palm width = 1)
_BLOCK = 8  # code cells per patchwork block side


def _skin_roi(crease: np.ndarray, rng: np.random.Generator, tone: float, lines: float
              ) -> np.ndarray:
    """One 128×128 grey ROI crop of a crease map, with pose jitter and skin shading."""
    angle = float(rng.normal(0.0, 3.0))
    scale = float(rng.uniform(0.97, 1.03))
    origin = _CANVAS / 2
    cx = origin + _CENTRE[0] * _SCALE + float(rng.normal(0.0, 2.0))
    cy = origin + _CENTRE[1] * _SCALE + float(rng.normal(0.0, 2.0))
    warp = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    warp[:, 2] += np.array([_ROI / 2 - cx, _ROI / 2 - cy])
    cut = cv2.warpAffine(crease, warp, (_ROI, _ROI), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    cut = cv2.GaussianBlur(cut, (0, 0), float(rng.uniform(1.0, 2.0)))
    low = cv2.resize(rng.normal(0.0, 1.0, (4, 4)).astype(np.float32), (_ROI, _ROI),
                     interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:_ROI, 0:_ROI].astype(np.float32) / _ROI - 0.5
    light = 1.0 + float(rng.normal(0, 0.08)) * xx + float(rng.normal(0, 0.08)) * yy
    grain = cv2.GaussianBlur(rng.normal(0.0, 1.0, (_ROI, _ROI)).astype(np.float32), (0, 0), 1.5)
    grey = tone * light * (1.0 + 0.06 * low + 0.15 * grain) * (
        1.0 - lines * np.clip(cut, 0.0, 1.2))
    grey = cv2.GaussianBlur(grey, (0, 0), float(rng.uniform(0.5, 1.2)))
    grey = grey + rng.normal(0.0, float(rng.uniform(1.0, 3.0)), grey.shape)
    return np.clip(grey, 0, 255).astype(np.uint8)


def render_identity(seed: int) -> list[np.ndarray]:
    """:data:`SAMPLES` ROIs of synthetic identity ``seed`` (deterministic)."""
    from palmpay.synth.identity import HandIdentity, seed_seq
    from palmpay.synth.palmprint import palm_print

    identity = HandIdentity.from_seed(seed)
    crease = palm_print(identity, "right", _SCALE, (_CANVAS / 2, _CANVAS / 2),
                        (_CANVAS, _CANVAS))
    rng = seed_seq("bench-roi", seed)
    tone = float(rng.uniform(120.0, 200.0))
    lines = identity.line_strength * float(rng.uniform(0.8, 1.2))
    return [_skin_roi(crease, rng, tone, lines) for _ in range(SAMPLES)]


def rendered_pool(identities: int, cache: Path, embedder: PalmEmbedder,
                  first_seed: int = 1_000_000) -> TemplateSet:
    """``identities`` × :data:`SAMPLES` rendered distractors (cached; module docstring)."""
    path = cache / f"{VERSION}-rendered-{identities}.npz"
    if not path.is_file():
        log.info("rendering and embedding %d synthetic palms (cached afterwards)", identities)
        vectors = np.empty((identities * SAMPLES, embedder.dim), np.float32)
        codes = np.empty((identities * SAMPLES, embedder.code_bytes), np.uint8)
        step = 256
        for start in range(0, identities, step):
            stop = min(identities, start + step)
            rois = [roi for seed in range(first_seed + start, first_seed + stop)
                    for roi in render_identity(seed)]
            rows = slice(start * SAMPLES, stop * SAMPLES)
            vectors[rows], codes[rows] = embedder.embed_many(rois)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=vectors, codes=codes)
        tmp.replace(path)
    with np.load(path) as z:
        vectors, codes = z["vectors"], z["codes"]
    palms = np.asarray([f"synth-{i // SAMPLES}" for i in range(len(vectors))])
    return TemplateSet(vectors, codes, palms)


@dataclass(frozen=True)
class VectorModel:
    """Mean, between-palm deviations and within-palm directions (module docstring)."""

    mean: np.ndarray
    between: np.ndarray  # (palms, dim): real palm means minus the mean, / sqrt(palms - 1)
    within: np.ndarray  # (WITHIN_RANK, dim): principal directions × their standard deviation
    rest_std: float  # per-axis standard deviation of the within-palm rest


def fit_vector_model(fit: TemplateSet) -> VectorModel:
    """Fit :class:`VectorModel` to real samples grouped by palm."""
    x = fit.vectors.astype(np.float64)
    names, palm = np.unique(fit.palms, return_inverse=True)
    means = np.zeros((len(names), x.shape[1]))
    np.add.at(means, palm, x)
    means /= np.bincount(palm)[:, None]
    mean = means.mean(axis=0)
    residual = x - means[palm]
    dof = max(len(x) - len(names), 1)
    _, s, vt = np.linalg.svd(residual, full_matrices=False)
    rank = min(WITHIN_RANK, len(s))
    variance = s ** 2 / dof
    rest = float(variance[rank:].sum() / max(x.shape[1] - rank, 1))
    return VectorModel(mean=mean.astype(np.float32),
                       between=((means - mean) / math.sqrt(max(len(names) - 1, 1))
                                ).astype(np.float32),
                       within=(vt[:rank] * np.sqrt(variance[:rank])[:, None]).astype(np.float32),
                       rest_std=math.sqrt(rest))


def model_vectors(model: VectorModel, identities: int, rng: np.random.Generator) -> np.ndarray:
    """(identities × SAMPLES, dim) unit vectors from ``model``."""
    dim = model.mean.shape[0]
    centres = model.mean + rng.standard_normal((identities, len(model.between)),
                                               dtype=np.float32) @ model.between
    x = np.repeat(centres, SAMPLES, axis=0)
    x += rng.standard_normal((len(x), len(model.within)), dtype=np.float32) @ model.within
    x += rng.standard_normal((len(x), dim), dtype=np.float32) * np.float32(model.rest_std)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def patchwork_codes(pool_codes: np.ndarray, identities: int, rng: np.random.Generator
                    ) -> np.ndarray:
    """(identities × SAMPLES, B) codes patched from the rendered pool (module docstring)."""
    from palmpay.embed import BITS_PER_CELL

    cells = pool_codes.shape[1] * 8 // BITS_PER_CELL
    side = int(round(math.sqrt(cells)))
    pool = np.unpackbits(pool_codes, axis=1, count=cells * BITS_PER_CELL).reshape(
        -1, SAMPLES, side, side, BITS_PER_CELL)
    blocks = side // _BLOCK
    src = rng.integers(0, len(pool), (identities, blocks, blocks))
    out = np.empty((identities, SAMPLES, side, side, BITS_PER_CELL), np.uint8)
    for by in range(blocks):
        for bx in range(blocks):
            ys, xs = slice(by * _BLOCK, (by + 1) * _BLOCK), slice(bx * _BLOCK, (bx + 1) * _BLOCK)
            out[:, :, ys, xs] = pool[src[:, by, bx], :, ys, xs]
    return np.packbits(out.reshape(identities * SAMPLES, -1), axis=1)


def model_distractors(model: VectorModel, pool: TemplateSet, identities: int, seed: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Vectors and codes of ``identities`` model identities (× :data:`SAMPLES` rows)."""
    rng = np.random.default_rng(seed)
    return model_vectors(model, identities, rng), patchwork_codes(pool.codes, identities, rng)
