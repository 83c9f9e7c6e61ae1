"""Offline evaluation of the recognition pipeline over a dataset folder (``palmpay eval``).

Every image goes through the same :class:`~palmpay.pipeline.Pipeline` as the live path, then
every image-vs-image pair is scored with the code matcher (:func:`palmpay.match.code_scores`) —
no sampling. What runs per image depends on ``roi``:

- ``detect`` (full-hand photos): palm detection and landmarks on the still image (no tracking),
  the pose gates and the palm cut, as the live path and the API run them on a frame. The
  quality gates (sharpness, exposure, palm size, :mod:`palmpay.quality`) run only with
  ``gates=True`` (``palmpay eval --quality-gates``): then an image is embedded only when it
  would be a good frame live. They are off by default so that the reported numbers stay those of
  the matcher on every detected ROI (on coep-dev they reject no image either way);
- ``given`` (the images already are palm ROIs): no detection and no gate at all, since there is
  no frame and no hand to measure; each image is only made a 128×128 grey ROI and embedded.

Protocols:

- ``all-pairs``: every pair of distinct images; rank-1 is leave-one-out.
- ``sessions``: session-2 images (``s2_*``) probe session-1 images (``s1_*``), the standard
  enroll-then-probe-months-later protocol.

Images that are not good (ROI or, with ``detect``, a quality gate failed) are counted in
``failed`` and left out of the pairs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs: types-tqdm is not locked

from palmpay import metrics
from palmpay.capture import read_image
from palmpay.config import Settings, get_settings
from palmpay.dataset import DatasetError, Sample, scan
from palmpay.embed import PalmEmbedder
from palmpay.match import code_scores
from palmpay.pipeline import Analysis, Pipeline

__all__ = ["EvalReport", "EvalScores", "PROTOCOLS", "ROI_MODES", "evaluate", "plot_det"]

log = logging.getLogger(__name__)

PROTOCOLS = ("all-pairs", "sessions")
ROI_MODES = ("detect", "given")


@dataclass(frozen=True)
class EvalReport:
    """The numbers ``palmpay eval`` prints; rates are fractions."""

    palms: int
    images: int
    failed: int
    genuine_pairs: int
    impostor_pairs: int
    eer: float
    frr_at_far_1e3: float
    frr_at_far_1e4: float
    rank1: float
    seconds_per_image: float

    def as_dict(self) -> dict[str, float | int]:
        """The exact JSON shape of ``palmpay eval --json``."""
        return {
            "palms": self.palms,
            "images": self.images,
            "failed": self.failed,
            "genuine_pairs": self.genuine_pairs,
            "impostor_pairs": self.impostor_pairs,
            "eer": self.eer,
            "frr_at_far_1e-3": self.frr_at_far_1e3,
            "frr_at_far_1e-4": self.frr_at_far_1e4,
            "rank1": self.rank1,
            "seconds_per_image": self.seconds_per_image,
        }


@dataclass(frozen=True)
class EvalScores:
    """The report plus the raw scores it came from (for DET plots and calibration)."""

    report: EvalReport
    negatives: np.ndarray
    positives: np.ndarray
    match_seconds: float
    threshold: float | None

    @property
    def at_threshold(self) -> tuple[float, float]:
        """(FAR, FRR) at the model's calibrated threshold: the live operating point."""
        if self.threshold is None:
            raise ValueError("the model has no calibrated threshold (models/compcode.json)")
        return metrics.far_frr(self.negatives, self.positives, self.threshold)


def _analyzer(mode: str, settings: Settings, embedder: PalmEmbedder, gates: bool
              ) -> tuple[Pipeline, Callable[[Path], Analysis]]:
    """The pipeline (for embedding) and a thread-safe path → :class:`Analysis` for ``mode``."""
    shared = Pipeline(settings, embedder=embedder)
    if mode == "given":
        return shared, lambda path: shared.given(read_image(path))
    local = threading.local()

    def detect(path: Path) -> Analysis:
        if not hasattr(local, "pipeline"):  # the extractor's ONNX sessions, one per thread
            local.pipeline = Pipeline(settings, embedder=embedder, gates=gates)
        analysis = local.pipeline.analyze(read_image(path))
        if not analysis.good:
            log.info("%s: %s", path, analysis.reason)
        return analysis

    return shared, detect


def evaluate(
    root: str | Path,
    roi: str = "detect",
    protocol: str = "all-pairs",
    workers: int | None = None,
    progress: bool = True,
    settings: Settings | None = None,
    embedder: PalmEmbedder | None = None,
    aliases: dict[str, str] | None = None,
    gates: bool = False,
) -> EvalScores:
    """Evaluate the pipeline on ``root`` (``<palm-id>/<sample>.<ext>``).

    ``roi`` is ``detect`` (find the palm in full-hand photos) or
    ``given`` (images are ROIs; nothing is gated), see the module docstring; ``gates`` applies
    the quality gates to detected ROIs (``detect`` only); ``workers`` threads
    (default: all cores) run the pipeline. ``aliases`` maps
    palm folders known to hold the same palm as another (label noise) to that one.
    """
    if roi not in ROI_MODES:
        raise ValueError(f"roi must be one of {ROI_MODES}, not {roi!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    settings = settings or get_settings()
    samples = scan(root)
    if aliases:
        samples = [replace(s, palm=aliases.get(s.palm, s.palm)) for s in samples]
    if protocol == "sessions":
        samples = [s for s in samples if s.session in (1, 2)]
        if not samples:
            raise DatasetError(f"{root}: sessions protocol needs files named s1_* and s2_*")
    workers = workers or os.cpu_count() or 1
    embedder = embedder or PalmEmbedder(settings)
    pipeline, analyze = _analyzer(roi, settings, embedder, gates)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        analyses = list(tqdm(pool.map(analyze, (s.path for s in samples)), total=len(samples),
                             desc=f"roi ({roi})", unit="img", disable=not progress))
        kept = [(s, a) for s, a in zip(samples, analyses, strict=True) if a.good]
        if not kept:
            raise DatasetError(f"{root}: no image gave a good palm ROI")
        batches = [kept[i:i + 64] for i in range(0, len(kept), 64)]
        parts = list(tqdm(pool.map(lambda b: pipeline.templates([a for _, a in b]), batches),
                          total=len(batches), desc="embed", unit="batch", disable=not progress))
    codes = np.stack([t.code for part in parts for t in part])
    extract_seconds = time.perf_counter() - start
    kept_samples = [s for s, _ in kept]

    start = time.perf_counter()
    negatives, positives, rank1 = _score(kept_samples, codes, protocol, embedder.max_shift)
    match_seconds = time.perf_counter() - start

    report = EvalReport(
        palms=len({s.palm for s in samples}),
        images=len(samples),
        failed=len(samples) - len(kept),
        genuine_pairs=int(positives.size),
        impostor_pairs=int(negatives.size),
        eer=float(metrics.eer(negatives, positives)),
        frr_at_far_1e3=float(metrics.frr_at_far(negatives, positives, 1e-3)),
        frr_at_far_1e4=float(metrics.frr_at_far(negatives, positives, 1e-4)),
        rank1=rank1,
        seconds_per_image=extract_seconds / len(samples),
    )
    threshold = embedder.meta.get("threshold")
    return EvalScores(report, negatives, positives, match_seconds, threshold)


def _score(samples: list[Sample], codes: np.ndarray, protocol: str, max_shift: int):
    labels = np.asarray([s.palm for s in samples])
    if protocol == "sessions":
        probe = np.asarray([s.session == 2 for s in samples])
        gallery = np.asarray([s.session == 1 for s in samples])
        if not probe.any() or not gallery.any():
            raise DatasetError("sessions protocol needs both s1_* and s2_* images")
        scores = code_scores(codes[probe], codes[gallery], max_shift=max_shift)
        same = labels[probe][:, None] == labels[gallery][None, :]
        positives, negatives = scores[same], scores[~same]
        probe_labels, gallery_labels = labels[probe], labels[gallery]
        closed = np.isin(probe_labels, gallery_labels)
        rank1 = metrics.rank1(scores[closed], probe_labels[closed], gallery_labels)
    else:
        scores = code_scores(codes, codes, max_shift=max_shift)
        upper = np.triu(np.ones(scores.shape, dtype=bool), k=1)
        same = labels[:, None] == labels[None, :]
        positives, negatives = scores[upper & same], scores[upper & ~same]
        loo = scores.copy()
        np.fill_diagonal(loo, -np.inf)
        has_mate = same.sum(axis=1) > 1
        rank1 = metrics.rank1(loo[has_mate], labels[has_mate], labels)
    return negatives.astype(np.float32), positives.astype(np.float32), float(rank1)


def plot_det(scores: EvalScores, path: str | Path, title: str) -> None:
    """Save a DET curve (FRR vs FAR, log axes) to ``path``, marking the operating point of the
    model's calibrated threshold."""
    threshold = scores.threshold
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    far, frr = metrics.det(scores.negatives, scores.positives)
    shown = (far > 0) & (frr > 0)  # a log axis has no zero; the axes stop at one error
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    ax.plot(far[shown], frr[shown], lw=1.6, label="DET")
    if scores.threshold is not None:
        threshold = scores.threshold
        op_far, op_frr = scores.at_threshold
        point = (max(op_far, 0.5 / scores.negatives.size), max(op_frr, 0.5 / scores.positives.size))
        ax.plot(*point, "o",
                label=f"model threshold {threshold:.3f}: FAR {op_far:.1e}, FRR {op_frr:.2%}")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.5 / scores.negatives.size, 1)
    ax.set_ylim(0.5 / scores.positives.size, 1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("false reject rate")
    ax.grid(True, which="both", alpha=0.3)
    report = scores.report
    ax.set_title(f"{title}\nEER {report.eer:.3%}, FRR@FAR1e-4 {report.frr_at_far_1e4:.3%}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
