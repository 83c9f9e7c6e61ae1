"""Pipeline: one frame → ROI → quality gates → :class:`~palmpay.embed.Template`, or the reason.

:class:`Pipeline` owns the three per-frame stages (a :class:`~palmpay.roi.PalmRoiExtractor`,
the gates of :mod:`palmpay.quality` and a :class:`~palmpay.embed.PalmEmbedder`) and is what
every caller runs a frame through: the live path (:meth:`palmpay.recognizer.Recognizer.replay`),
the API (:mod:`palmpay.api.palms`), ``palmpay eval`` (:mod:`palmpay.evaluate`) and the
benchmarks (``palmpay bench``). It keeps no presentation state of its own: a frame analysed
with ``track=True`` uses the extractor's hand track (one video source; cleared by
:meth:`Pipeline.reset`), one analysed with ``track=<a HandTrack>`` that track, which is how
concurrent presentations (the API's checkout requests) each track their own hand.

Per-stage CPU time: every stage is timed with :func:`palmpay.cputime.stage` (``detection``,
``landmarks``, ``roi``, ``quality``, ``embed`` here; ``decode``, ``search`` and ``liveness`` by
the API); ``with measure_stages() as meter:`` around any code gives its split
(``meter.split``, a :class:`~palmpay.cputime.StageSplit`), and :func:`stage_totals` the
process's (:func:`palmpay.cputime.measure` and :func:`~palmpay.cputime.totals`, re-exported).

A frame is *good* when its palm ROI was found (:class:`~palmpay.roi.RoiStatus` ``ok``) and every
quality gate passed on the palm region (:func:`~palmpay.roi.palm_region`) of the frame. Only
good frames are embedded. :meth:`Pipeline.given` is for images that already are palm ROIs
(``palmpay eval --roi given``): there is no frame and no hand, so no ROI detection and no
quality gate runs; the image is only converted to the ROI format and embedded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import faiss
import numpy as np

from palmpay.config import Settings, get_settings
from palmpay.cputime import STAGES, StageSplit, stage
from palmpay.cputime import measure as measure_stages
from palmpay.cputime import totals as stage_totals
from palmpay.embed import PalmEmbedder, Template
from palmpay.quality import Quality, assess_quality
from palmpay.roi import ROI_SIZE, HandTrack, PalmRoiExtractor, RoiResult, RoiStatus, palm_region

__all__ = ["STAGES", "Analysis", "HandTrack", "Pipeline", "StageSplit", "limit_search_threads",
           "measure_stages", "stage_totals"]


@dataclass(frozen=True, eq=False)
class Analysis:
    """One analysed frame: its ROI result, its quality (None when no gate could run: no hand,
    or a given ROI) and, when the frame is good and was embedded, its template."""

    roi: RoiResult
    quality: Quality | None
    template: Template | None = None

    @property
    def good(self) -> bool:
        """ROI found and every quality gate that applies passed."""
        return self.roi.ok and (self.quality is None or self.quality.ok)

    @property
    def status(self) -> str:
        """The ROI status, or ``ok`` / ``low_quality`` when the ROI was found."""
        if not self.roi.ok:
            return self.roi.status.value
        return "ok" if self.good else "low_quality"

    @property
    def reason(self) -> str:
        """Why the frame is not good (the ROI's reason or the failed gates), or ``ok``."""
        if not self.roi.ok:
            return self.roi.reason
        if self.quality is not None and not self.quality.ok:
            return "quality: " + ", ".join(self.quality.problems)
        return "ok"


def limit_search_threads(threads: int) -> None:
    """FAISS's OpenMP team size for searches made by the calling thread (OpenMP keeps it per
    thread, so each request thread sets its own); 0 leaves the default (all cores).

    ``Settings.library_threads`` (default 1) sets it, and OpenCV's threads when a
    :class:`Pipeline` is built. Requests already run in parallel threads; on a few cores, a
    team of threads per call only adds CPU (OpenMP workers spin after each search, OpenCV's
    pool wakes for every small warp): 1 took a 4-frame payment from ~80 to ~53 CPU-ms on 2
    cores (``scripts/probe_cost.py --library-threads 0`` against the default)."""
    if threads and faiss.omp_get_max_threads() != threads:
        faiss.omp_set_num_threads(threads)


class Pipeline:
    """Frame → :class:`Analysis` (and :class:`~palmpay.embed.Template` for good frames), with
    the stages built from ``settings`` unless given.

    ``gates=False`` skips the quality gates (a frame is good when its ROI is found); only
    ``palmpay eval`` offers that, to measure the matcher on every detected ROI.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        extractor: PalmRoiExtractor | None = None,
        embedder: PalmEmbedder | None = None,
        *,
        gates: bool = True,
    ) -> None:
        self.settings = settings or get_settings()
        self.gates = gates
        if self.settings.library_threads:
            cv2.setNumThreads(self.settings.library_threads)  # process-wide
        self.extractor = extractor or PalmRoiExtractor(self.settings)
        self.embedder = embedder or PalmEmbedder(self.settings)

    def analyze(self, image: np.ndarray, track: bool | HandTrack = False) -> Analysis:
        """ROI and quality of one frame; not embedded. ``track``: False for a still (the
        detector runs), True to track across calls with the extractor's own track, or the
        :class:`~palmpay.roi.HandTrack` of the presentation the frame belongs to."""
        if isinstance(track, HandTrack):
            roi = self.extractor.track(image, track)
        else:
            roi = self.extractor.track(image) if track else self.extractor.extract(image)
        if roi.hand is None or not self.gates:
            return Analysis(roi, None)
        with stage("quality"):
            quality = assess_quality(image, palm_region(roi.hand), roi.palm_width, self.settings)
        return Analysis(roi, quality)

    def template(self, image: np.ndarray, track: bool | HandTrack = False) -> Analysis:
        """:meth:`analyze`, then the template of the frame when it is good."""
        analysis = self.analyze(image, track=track)
        if not analysis.good:
            return analysis
        [template] = self.templates([analysis])
        return replace(analysis, template=template)

    def templates(self, analyses: Sequence[Analysis]) -> list[Template]:
        """Templates of the good analyses, in order, embedded in one batch (others skipped)."""
        rois = [a.roi.roi for a in analyses if a.good and a.roi.roi is not None]
        if not rois:
            return []
        with stage("embed"):
            vectors, codes = self.embedder.embed_many(rois)
        return [Template(v, c) for v, c in zip(vectors, codes, strict=True)]

    def given(self, image: np.ndarray) -> Analysis:
        """A palm ROI image as an :class:`Analysis` (grey, resized to 128×128); no detection and
        no quality gate runs (there is no hand to measure). Embed it with :meth:`templates`."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if gray.shape != (ROI_SIZE, ROI_SIZE):
            gray = cv2.resize(gray, (ROI_SIZE, ROI_SIZE), interpolation=cv2.INTER_AREA)
        return Analysis(RoiResult(RoiStatus.OK, "roi given", roi=gray), None)

    def reset(self) -> None:
        """Forget the tracked hand (a new video or presentation source starts)."""
        self.extractor.reset()
