"""The live path: frames → :class:`~palmpay.pipeline.Pipeline` templates → 1:N search →
presentation decision.

A *presentation* is one hand held over the camera: the frames from the first one with a hand to
the last one before ``presentation_gap`` hand-less frames. Its decision fuses the first
``presentation_frames`` *good* frames (palm ROI found and every quality gate passed): each
identity's score is the mean, over those frames, of its best enrolled sample's code score, and
the best identity is a ``match`` when that mean reaches the threshold of the open-set operating
point for the gallery's size (:class:`palmpay.decision.OperatingPoint`: the target FPIR holds
whatever the number of enrolled samples), otherwise ``unknown``. A presentation with no good
frame at all is ``no_palm``.

:class:`Recognizer` holds the enrolled index and the presentation state only; every frame goes
through its :class:`~palmpay.pipeline.Pipeline`. Each probe frame is scored once: its FAISS
shortlist is taken once (:meth:`PalmIndex.shortlist`) and its code is re-ranked once against
its shortlist (which gives the frame's own best match, :attr:`FrameResult.best`); when the
presentation ends, each fused frame is re-ranked only against the candidates of the other
frames' shortlists it has not been scored against yet, and the scores are fused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from palmpay import decision
from palmpay.capture import Frame, read_image
from palmpay.config import Settings, get_settings
from palmpay.dataset import scan
from palmpay.embed import CalibrationError, PalmEmbedder, Template
from palmpay.index import Match, PalmIndex
from palmpay.pipeline import Pipeline
from palmpay.quality import Quality
from palmpay.roi import PalmRoiExtractor, RoiStatus

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
    """Enroll palms and recognise them in frames, with the stages built from ``settings``
    (or the given ``pipeline``, or ``extractor`` / ``embedder``) and an index sized for the
    embedder."""

    def __init__(
        self,
        settings: Settings | None = None,
        extractor: PalmRoiExtractor | None = None,
        embedder: PalmEmbedder | None = None,
        index: PalmIndex | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.pipeline = pipeline or Pipeline(self.settings, extractor, embedder)
        if index is None:
            model = self.pipeline.embedder
            index = PalmIndex.from_settings(self.settings, model.dim, model.code_bytes,
                                            max_shift=model.max_shift)
        self.index = index
        self._operating_point: decision.OperatingPoint | None = None

    @property
    def extractor(self) -> PalmRoiExtractor:
        return self.pipeline.extractor

    @property
    def embedder(self) -> PalmEmbedder:
        return self.pipeline.embedder

    @property
    def operating_point(self) -> decision.OperatingPoint:
        """The open-set operating point: the model's tail (``models/compcode.json``
        ``open_set``) with the target FPIR, FNIR ceiling and N_safe override of the settings."""
        if self._operating_point is None:
            open_set = self.embedder.meta.get("open_set")
            if open_set is None:
                raise CalibrationError(f"{self.embedder.path}: no open_set calibration; run "
                                       "models/calibrate_open_set.py")
            s = self.settings
            self._operating_point = decision.OperatingPoint.from_calibration(
                open_set, s.target_fpir, s.max_fnir, s.n_safe)
        return self._operating_point

    @property
    def threshold(self) -> float:
        """Decision threshold for a search over the whole gallery (it rises with its size)."""
        return self.operating_point.threshold(len(self.index))

    def samples_of(self, identities: Iterable[str]) -> int:
        """Enrolled samples of those ``identities`` that are in the index."""
        return sum(self.index.sample_count(who) for who in identities)

    def log_operating_point(self) -> None:
        """Log the threshold for the gallery's current size (it changes with every enroll and
        unenroll)."""
        n = len(self.index)
        try:
            point = self.operating_point
        except CalibrationError:
            return
        log.info("gallery %d samples: threshold %.4f for target FPIR %g (N_safe %d%s)", n,
                 point.threshold(n), point.target_fpir, point.n_safe,
                 ", past it: narrowing required" if point.needs_narrowing(n) else "")

    # -- enrollment ------------------------------------------------------------------------
    def enroll(self, identity: str, images: Iterable[tuple[str, np.ndarray]]) -> EnrollReport:
        """Enroll ``identity`` from named images (full-hand photos or frames).

        Samples whose ROI or quality fails are skipped and reported; raises
        :class:`EnrollmentError` when none is usable.
        """
        good, rejected = [], {}
        for name, image in images:
            analysis = self.pipeline.analyze(image)
            if analysis.good:
                good.append(analysis)
            else:
                rejected[name] = analysis.reason
        if not good:
            raise EnrollmentError(f"{identity}: no usable palm sample ({rejected})")
        self.add(identity, self.pipeline.templates(good))
        return EnrollReport(identity, len(good), rejected)

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

    def add(self, identity: str, templates: Sequence[Template], *, quiet: bool = False) -> None:
        """Add ``templates`` to the index as samples of ``identity`` (and log the new
        threshold unless ``quiet``)."""
        self.index.add(identity, np.stack([t.vector for t in templates]),
                       np.stack([t.code for t in templates]))
        if not quiet:
            self.log_operating_point()

    def remove(self, identity: str) -> int:
        """Remove every sample of ``identity`` from the index; returns how many were removed
        (raises :class:`~palmpay.index.UnknownIdentityError` when it is not enrolled)."""
        removed = self.index.remove(identity)
        self.log_operating_point()
        return removed

    # -- identification --------------------------------------------------------------------
    def identify(self, templates: Sequence[Template], within: Iterable[str] | None = None
                 ) -> tuple[str | None, float]:
        """Fuse several good frames' templates into (best identity, score).

        Each template's shortlist is taken once and all codes are re-ranked against the union
        of the shortlists in one call. With ``within`` (a narrowed search: the customers who
        gave the same phone digits), no shortlist is taken: every code is scored against every
        sample of those identities that are enrolled. Returns ``(None, 0.0)`` when there is no
        candidate. The caller compares the score with the threshold for the number of samples
        searched (:attr:`threshold`, or ``operating_point.threshold(samples_of(within))``).
        """
        if within is not None:
            names = sorted(who for who in set(within) if self.index.sample_count(who))
            probes = [_Probe(t, dict.fromkeys(names, 0.0)) for t in templates]
            return self._fuse(probes)
        return self._fuse([self._probe(t, rerank=False) for t in templates])

    def replay(self, frames: Iterable[Frame]) -> Iterator[FrameResult | Presentation]:
        """Run the live path over frames, yielding every :class:`FrameResult` and, when each
        presentation ends, its :class:`Presentation`."""
        self.pipeline.reset()
        state: _Open | None = None
        number = 0
        for frame in frames:
            analysis = self.pipeline.template(frame.image, track=True)
            roi = analysis.roi
            probe = None if analysis.template is None else self._probe(analysis.template)
            yield FrameResult(frame.index, frame.timestamp, roi.status, roi.reason,
                              analysis.quality, None if probe is None else probe.best())
            if roi.status not in (RoiStatus.NO_HAND, RoiStatus.INVALID_IMAGE):
                if state is None:
                    number += 1
                    state = _Open(number, frame.index)
                state.last_frame, state.misses = frame.index, 0
                if probe is not None and len(state.probes) < self.settings.presentation_frames:
                    state.probes.append(probe)
                    state.good_frames.append(frame.index)
            elif state is not None:
                state.misses += 1
                if state.misses >= self.settings.presentation_gap:
                    yield self._decide(state)
                    state = None
        if state is not None:
            yield self._decide(state)

    def _probe(self, template: Template, rerank: bool = True) -> _Probe:
        """One probe frame: its shortlist (the one FAISS query), and with ``rerank`` its code
        scored against that shortlist."""
        probe = _Probe(template, self.index.shortlist(template.vector, self.settings.shortlist_k))
        if rerank and probe.shortlist:
            names = list(probe.shortlist)
            probe.scores.update(zip(names, self.index.rerank(template.code, names)[0].tolist(),
                                    strict=True))
        return probe

    def _fuse(self, probes: Sequence[_Probe]) -> tuple[str | None, float]:
        """Score every probe against the union of the shortlists, each (probe, identity) pair
        once, then fuse (:func:`palmpay.decision.fuse`)."""
        union = sorted(set().union(*(p.shortlist for p in probes)))
        if not union:
            return None, 0.0
        fresh = [p for p in probes if not p.scores]
        if fresh:
            block = self.index.rerank(np.stack([p.template.code for p in fresh]), union)
            for probe, row in zip(fresh, block, strict=True):
                probe.scores.update(zip(union, row.tolist(), strict=True))
        for probe in probes:
            missing = [who for who in union if who not in probe.scores]
            if missing:
                scores = self.index.rerank(probe.template.code, missing)[0]
                probe.scores.update(zip(missing, scores.tolist(), strict=True))
        return decision.fuse([p.scores for p in probes])

    def _decide(self, state: _Open) -> Presentation:
        if not state.probes:
            verdict = decision.NO_PALM
        else:
            verdict = decision.decide(*self._fuse(state.probes), self.threshold)
        return Presentation(state.number, state.first_frame, state.last_frame, verdict.decision,
                            verdict.identity, verdict.score, tuple(state.good_frames))


@dataclass
class _Probe:
    """One probe frame's template, shortlist (identity → cosine) and code scores so far."""

    template: Template
    shortlist: dict[str, float]
    scores: dict[str, float] = field(default_factory=dict)

    def best(self) -> Match | None:
        """This frame's own top match (its shortlist re-ranked), ties in shortlist order."""
        if not self.scores:
            return None
        who = max(self.shortlist, key=self.scores.__getitem__)
        return Match(who, self.scores[who], self.shortlist[who])


@dataclass
class _Open:
    number: int
    first_frame: int
    last_frame: int = -1
    misses: int = 0
    probes: list[_Probe] = field(default_factory=list)
    good_frames: list[int] = field(default_factory=list)
