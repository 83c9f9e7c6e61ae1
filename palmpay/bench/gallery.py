"""Real templates for the benchmark: the dev palms, embedded once and cached under ``.work/``.

:func:`real_templates` runs every image of ``tongji-dev`` (128×128 palm ROIs, straight into the
embedder, as ``palmpay eval --roi given`` does) and ``coep-dev`` (full-hand photos: palm
detection, landmarks and the palm cut, as ``palmpay eval`` does) through the real
:class:`~palmpay.embed.PalmEmbedder` and splits them into:

- **gallery**: the first :data:`ENROLLED_SAMPLES` session-1 images of every tongji palm but the
  held-out ones (like a kiosk enrollment: a few photos) and every coep palm;
- **genuine probes**: the session-2 images of the enrolled tongji palms (months later);
- **stranger probes**: the session-2 images of :data:`HELD_OUT` tongji palms never enrolled;
- **newcomers**: the session-1 images of those held-out palms (customers the enroll benchmark
  adds to a full index).

The templates are cached in ``.work/bench/<model sha256[:12]>/real.npz`` (a different model or
a change of :data:`REAL_VERSION` makes a new cache), so only the first run pays for the images.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from palmpay.config import Settings
from palmpay.dataset import Sample, scan
from palmpay.embed import PalmEmbedder

__all__ = ["ENROLLED_SAMPLES", "HELD_OUT", "RealSet", "TemplateSet", "cache_dir",
           "model_key", "real_templates"]

log = logging.getLogger(__name__)

REAL_VERSION = "real-v1"
#: Session-1 images enrolled per tongji palm (a kiosk enrolls 3 to 4 photos).
ENROLLED_SAMPLES = 4
#: Tongji palms left out of every gallery: their session-2 images are the stranger probes.
HELD_OUT = 50


@dataclass(frozen=True)
class TemplateSet:
    """Templates and the palm each came from (one row each)."""

    vectors: np.ndarray
    codes: np.ndarray
    palms: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, rows: np.ndarray) -> TemplateSet:
        return TemplateSet(self.vectors[rows], self.codes[rows], self.palms[rows])


@dataclass(frozen=True)
class RealSet:
    """The split of the real dev palms (module docstring)."""

    gallery: TemplateSet
    genuine: TemplateSet
    strangers: TemplateSet
    newcomers: TemplateSet
    #: Session-1 images of the enrolled tongji palms beyond the enrolled ones (fit data only).
    extra: TemplateSet
    #: Images whose palm ROI could not be found (coep), left out.
    failed: int


def model_key(settings: Settings) -> str:
    """The first 12 hex digits of the embedder model's sha256 (the cache key)."""
    path = settings.model_path(settings.embedder)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def cache_dir(root: Path, settings: Settings) -> Path:
    """``root/<model key>``, created."""
    folder = root / model_key(settings)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _embed(samples: list[Sample], settings: Settings, embedder: PalmEmbedder, given: bool
           ) -> tuple[list[Sample], np.ndarray, np.ndarray]:
    from palmpay.capture import read_image
    from palmpay.pipeline import Pipeline

    pipeline = Pipeline(settings, embedder=embedder, gates=False)
    kept, rois = [], []
    for sample in samples:
        image = read_image(sample.path)
        analysis = pipeline.given(image) if given else pipeline.analyze(image)
        if analysis.good and analysis.roi.roi is not None:
            kept.append(sample)
            rois.append(analysis.roi.roi)
    vectors, codes = embedder.embed_many(rois)
    return kept, vectors, codes


def _embed_all(data: Path, settings: Settings) -> dict[str, np.ndarray]:
    embedder = PalmEmbedder(settings)
    tongji = scan(data / "tongji-dev")
    coep = scan(data / "coep-dev")
    log.info("embedding %d tongji ROIs and %d coep photos (cached afterwards)", len(tongji),
             len(coep))
    t_kept, t_vec, t_code = _embed(tongji, settings, embedder, given=True)
    c_kept, c_vec, c_code = _embed(coep, settings, embedder, given=False)
    names = [f"tongji-{s.palm}" for s in t_kept] + [f"coep-{s.palm}" for s in c_kept]
    sessions = [s.session or 0 for s in t_kept] + [0] * len(c_kept)
    order = [s.path.name for s in t_kept] + [s.path.name for s in c_kept]
    return {"vectors": np.concatenate([t_vec, c_vec]), "codes": np.concatenate([t_code, c_code]),
            "palms": np.asarray(names), "sessions": np.asarray(sessions, np.int8),
            "files": np.asarray(order), "failed": np.asarray(len(tongji) + len(coep)
                                                            - len(names))}


def real_templates(data: Path, cache: Path, settings: Settings) -> RealSet:
    """The split real templates (module docstring), from the cache when it is there."""
    path = cache / f"{REAL_VERSION}.npz"
    if not path.is_file():
        arrays = _embed_all(data, settings)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
        tmp.replace(path)
    with np.load(path) as z:
        vectors, codes, palms = z["vectors"], z["codes"], z["palms"]
        sessions, failed = z["sessions"], int(z["failed"])
    every = TemplateSet(vectors, codes, palms)
    tongji = np.char.startswith(palms, "tongji-")
    tongji_palms = sorted(set(palms[tongji].tolist()))
    held = set(tongji_palms[len(tongji_palms) - HELD_OUT:])
    is_held = np.isin(palms, sorted(held))
    s1, s2 = tongji & (sessions == 1), tongji & (sessions == 2)
    # Rank of each session-1 image within its palm (files are sorted by name in the cache).
    rank = np.zeros(len(palms), np.int64)
    seen: dict[str, int] = {}
    for i in np.flatnonzero(s1):
        rank[i] = seen.get(palms[i], 0)
        seen[palms[i]] = rank[i] + 1
    enrolled = s1 & ~is_held & (rank < ENROLLED_SAMPLES)
    gallery = np.flatnonzero(enrolled | ~tongji)
    return RealSet(
        gallery=every.take(gallery),
        genuine=every.take(np.flatnonzero(s2 & ~is_held)),
        strangers=every.take(np.flatnonzero(s2 & is_held)),
        newcomers=every.take(np.flatnonzero(s1 & is_held)),
        extra=every.take(np.flatnonzero(s1 & ~is_held & ~enrolled)),
        failed=failed,
    )
