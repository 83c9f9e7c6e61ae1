"""The live path: frame → quality + ROI → template → 1:N match, and presentation fusion.

A *presentation* is one hand held over the camera: the frames from the first one with a hand to
the last one before ``presentation_gap`` hand-less frames. Its decision fuses the first
``presentation_frames`` *good* frames (palm ROI found and every quality gate passed): each
identity's score is the mean, over those frames, of its best enrolled sample's code score, and
the best identity is a ``match`` when that mean reaches the model's calibrated threshold
(``models/compcode.json``, chosen at a fixed false-accept rate), otherwise ``unknown``. A
presentation with no good frame at all is ``no_palm``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from palmpay.capture import Frame, read_image
from palmpay.config import Settings, get_settings
from palmpay.dataset import scan
from palmpay.embed import PalmEmbedder
from palmpay.index import Match, PalmIndex
from palmpay.match import code_scores
from palmpay.quality import Quality, assess_quality
from palmpay.roi import PalmRoiExtractor, RoiResult, RoiStatus, palm_region

__all__ = [
    "EnrollmentError",
    "EnrollReport",
    "FrameResult",
    "Presentation",
    "Recognizer",
]

log = logging.getLogger(__name__)


class EnrollmentError(ValueError):
    """No usable palm sample was found for an identity."""


@dataclass(frozen=True)
class EnrollReport:
    """How enrollment of one identity went: ``rejected`` maps sample name → reason."""

    identity: str
    used: int
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FrameResult:
    """One analysed frame. ``best`` is the top match of this frame alone (None if not good)."""

    index: int
    timestamp: float
    roi_status: RoiStatus
    reason: str
    quality: Quality | None
    best: Match | None

    @property
    def good(self) -> bool:
        return self.roi_status is RoiStatus.OK and self.quality is not None and self.quality.ok


@dataclass(frozen=True)
class Presentation:
    """One decision: ``match`` (identity + score), ``unknown`` (best score) or ``no_palm``.

    ``good_frames`` are the indices of the frames that were fused (what a terminal would send).
    """

    presentation: int
    first_frame: int
    last_frame: int
    decision: str
    identity: str | None
    score: float | None
    good_frames: tuple[int, ...]

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of ``palmpay replay --json``."""
        return {
            "presentation": self.presentation,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "decision": self.decision,
            "identity": self.identity,
            "score": None if self.score is None else round(self.score, 4),
        }


class Recognizer:
    """Enroll palms and recognise them in frames, with the stages built from ``settings``."""

    def __init__(
        self,
        settings: Settings | None = None,
        extractor: PalmRoiExtractor | None = None,
        embedder: PalmEmbedder | None = None,
        index: PalmIndex | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.extractor = extractor or PalmRoiExtractor(self.settings)
        self.embedder = embedder or PalmEmbedder(self.settings)
        self.index = index or PalmIndex(
            self.embedder.dim, self.embedder.code_bytes, max_shift=self.embedder.max_shift)

    @property
    def threshold(self) -> float:
        """Decision threshold on the code score, calibrated at the model's fixed FAR."""
        return self.embedder.threshold

    # -- per frame -------------------------------------------------------------------------
    def analyze(self, image: np.ndarray, track: bool = False) -> tuple[RoiResult, Quality | None]:
        """ROI (tracking across calls when ``track``) and quality of one frame."""
        roi = self.extractor.track(image) if track else self.extractor.extract(image)
        if roi.hand is None:
            return roi, None
        region = palm_region(roi.hand)
        return roi, assess_quality(image, region, roi.palm_width, self.settings)

    # -- enrollment ------------------------------------------------------------------------
    def enroll(self, identity: str, images: Iterable[tuple[str, np.ndarray]]) -> EnrollReport:
        """Enroll ``identity`` from named images (full-hand photos or frames).

        Samples whose ROI or quality fails are skipped and reported; raises
        :class:`EnrollmentError` when none is usable.
        """
        rois, rejected = [], {}
        for name, image in images:
            roi, quality = self.analyze(image)
            if not roi.ok:
                rejected[name] = roi.reason
            elif quality is None or not quality.ok:
                rejected[name] = "quality: " + ", ".join(quality.problems if quality else ())
            else:
                rois.append(roi.roi)
        if not rois:
            raise EnrollmentError(f"{identity}: no usable palm sample ({rejected})")
        vectors, codes = self.embedder.embed_many(rois)
        self.index.add(identity, vectors, codes)
        return EnrollReport(identity, len(rois), rejected)

    def enroll_folder(self, gallery: str | Path) -> list[EnrollReport]:
        """Enroll every ``<gallery>/<identity>/`` folder of images; unusable palms are logged."""
        by_palm: dict[str, list[Path]] = {}
        for sample in scan(gallery):
            by_palm.setdefault(sample.palm, []).append(sample.path)
        reports = []
        for identity, paths in by_palm.items():
            try:
                reports.append(self.enroll(identity, ((p.name, read_image(p)) for p in paths)))
            except EnrollmentError as err:
                log.warning("%s", err)
                reports.append(EnrollReport(identity, 0, {"*": str(err)}))
        return reports

    # -- identification --------------------------------------------------------------------
    def identify(self, templates: list[tuple[np.ndarray, np.ndarray]]) -> tuple[str | None, float]:
        """Fuse several good frames' (vector, code) templates into (best identity, score).

        Returns ``(None, 0.0)`` when nothing is enrolled. The caller compares the score with
        :attr:`threshold`.
        """
        candidates: set[str] = set()
        for vector, code in templates:
            candidates.update(m.identity for m in self.index.search(
                vector, code, self.settings.shortlist_k))
        if not candidates:
            return None, 0.0
        owners, gallery = self.index.codes_of(sorted(candidates))
        scores = code_scores(np.stack([code for _, code in templates]), gallery,
                             max_shift=self.embedder.max_shift)
        owner_array = np.asarray(owners)
        fused = {
            who: float(scores[:, owner_array == who].max(axis=1).mean())
            for who in sorted(candidates)
        }
        best = max(fused, key=fused.__getitem__)
        return best, fused[best]

    def replay(self, frames: Iterable[Frame]) -> Iterator[FrameResult | Presentation]:
        """Run the live path over frames, yielding every :class:`FrameResult` and, when each
        presentation ends, its :class:`Presentation`."""
        self.extractor.reset()
        state: _Open | None = None
        number = 0
        for frame in frames:
            roi, quality = self.analyze(frame.image, track=True)
            best = None
            seen = roi.status not in (RoiStatus.NO_HAND, RoiStatus.INVALID_IMAGE)
            result_good = roi.ok and quality is not None and quality.ok
            if result_good:
                vector, code = (a[0] for a in self.embedder.embed_many([roi.roi]))
                matches = self.index.search(vector, code, self.settings.shortlist_k)
                best = matches[0] if matches else None
            yield FrameResult(frame.index, frame.timestamp, roi.status, roi.reason, quality, best)
            if seen:
                if state is None:
                    number += 1
                    state = _Open(number, frame.index)
                state.last_frame, state.misses = frame.index, 0
                if result_good and len(state.templates) < self.settings.presentation_frames:
                    state.templates.append((vector, code))
                    state.good_frames.append(frame.index)
            elif state is not None:
                state.misses += 1
                if state.misses >= self.settings.presentation_gap:
                    yield self._decide(state)
                    state = None
        if state is not None:
            yield self._decide(state)

    def _decide(self, state: _Open) -> Presentation:
        if not state.templates:
            return Presentation(state.number, state.first_frame, state.last_frame, "no_palm",
                                None, None, ())
        identity, score = self.identify(state.templates)
        decision = "match" if identity is not None and score >= self.threshold else "unknown"
        return Presentation(state.number, state.first_frame, state.last_frame, decision,
                            identity if decision == "match" else None, score,
                            tuple(state.good_frames))


@dataclass
class _Open:
    number: int
    first_frame: int
    last_frame: int = -1
    misses: int = 0
    templates: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    good_frames: list[int] = field(default_factory=list)
