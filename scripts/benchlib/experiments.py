"""The experiments of ``scripts/bench.py``, each returning plain rows (:mod:`benchlib.results`).

:func:`run` sets up the models and the synthetic data once and runs them all in order:
:func:`stage_latencies`, :func:`search_latencies`, :func:`end_to_end` and
:func:`exact_vs_approximate`. What each one measures: the docstring of ``scripts/bench.py``.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, replace
from functools import partial

import faiss
import numpy as np

from benchlib.gallery import (
    QUERY_COSINES,
    SAMPLES_PER_IDENTITY,
    build_gallery,
    gallery_vectors,
    noisy_queries,
)
from benchlib.harness import CallCounter, measure, set_threads
from benchlib.results import (
    AnnFacts,
    AnnRow,
    BenchResults,
    LiveRow,
    Plan,
    SearchRow,
    StageRow,
    TrackStats,
)
from palmpay import synth
from palmpay.config import Settings
from palmpay.embed import PalmEmbedder
from palmpay.index import PalmIndex
from palmpay.pipeline import Pipeline
from palmpay.quality import assess_quality
from palmpay.roi import (
    Hand,
    PalmRoiExtractor,
    RotatedRect,
    detection_rect,
    palm_region,
    palm_roi,
)

__all__ = ["end_to_end", "exact_vs_approximate", "run", "search_latencies", "stage_latencies"]

FRAME_SIZE = (640, 480)
Gallery = tuple[PalmIndex, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Fixture:
    """One rendered frame and everything the later stages need from the earlier ones."""

    frame: np.ndarray
    rect: RotatedRect
    hand: Hand
    region: tuple[int, int, int, int]
    palm_width: float
    roi: np.ndarray


def run(plan: Plan, threads: int, seed: int, quick: bool) -> BenchResults:
    """Every experiment, with ``threads`` onnxruntime / OpenCV / FAISS query threads."""
    settings = Settings(intra_op_threads=threads)
    set_threads(threads)
    extractor = PalmRoiExtractor(settings)
    embedder = PalmEmbedder(settings)
    rng = np.random.default_rng(seed)

    fixtures, misses = render_fixtures(extractor, plan.hands, seed)
    if not fixtures:
        raise SystemExit("no synthetic hand gave a palm ROI; the ROI stage is broken")
    clip = synth.presentation_frames(
        synth.HandIdentity.from_seed(seed), n_frames=plan.clip_frames, seed=seed,
        size=FRAME_SIZE, enter_fraction=0.0, leave_fraction=0.0)

    stages, track = stage_latencies(settings, extractor, embedder, fixtures, clip, plan)
    galleries = {n: build_gallery(n, embedder, rng) for n in plan.galleries}
    searches = search_latencies(galleries, embedder, settings.shortlist_k, plan.runs, rng)
    live = end_to_end(settings, extractor, embedder, galleries[plan.e2e_gallery][0], clip, plan)
    del galleries
    ann, ann_facts = exact_vs_approximate(plan, embedder.dim, settings.shortlist_k, threads, rng)
    return BenchResults(plan=plan, quick=quick, threads=threads,
                        shortlist_k=settings.shortlist_k, hands_used=len(fixtures),
                        misses=misses, stages=stages, track=track, searches=searches,
                        live=live, ann=ann, ann_facts=ann_facts)


def render_fixtures(extractor: PalmRoiExtractor, hands: int, seed: int
                    ) -> tuple[list[Fixture], int]:
    """Render ``hands`` synthetic hands and run them through the ROI stage once.

    Returns the fixtures of the frames that gave a palm ROI and how many did not.
    """
    fixtures, misses = [], 0
    for n in range(hands):
        identity = synth.HandIdentity.from_seed(seed + n)
        frame = synth.render_hand(identity, synth.Variation.random(seed + n, size=FRAME_SIZE),
                                  size=FRAME_SIZE)
        detections = extractor.detector.detect(frame)
        result = extractor.extract(frame)
        if not detections or not result.ok:
            misses += 1
            continue
        rect = detection_rect(detections[0])
        hand = extractor.landmarker.run(frame, rect)
        region = palm_region(hand)
        fixtures.append(Fixture(frame, rect, hand, region, result.palm_width, result.roi))
    return fixtures, misses


def stage_latencies(settings: Settings, extractor: PalmRoiExtractor, embedder: PalmEmbedder,
                    fixtures: list[Fixture], clip: list[np.ndarray], plan: Plan
                    ) -> tuple[list[StageRow], TrackStats]:
    """Section 1: one row per pipeline stage."""
    rows = [
        StageRow("capture quality (`assess_quality`)",
                 measure(lambda f: assess_quality(f.frame, f.region, f.palm_width, settings),
                         fixtures, plan.runs)),
        StageRow(f"palm detection (`PalmDetector.detect`, {settings.palm_detector})",
                 measure(lambda f: extractor.detector.detect(f.frame), fixtures, plan.runs)),
        StageRow(f"landmarks (`HandLandmarker.run`, {settings.hand_landmarker})",
                 measure(lambda f: extractor.landmarker.run(f.frame, f.rect), fixtures,
                         plan.runs)),
        StageRow("ROI cut (`palm_roi`)",
                 measure(lambda f: palm_roi(f.frame, f.hand), fixtures, plan.runs)),
        StageRow("`PalmRoiExtractor.extract` (detection every frame)",
                 measure(lambda f: extractor.extract(f.frame), fixtures, plan.runs)),
    ]
    extractor.reset()
    counter = CallCounter(extractor.detector.detect)
    extractor.detector.detect = counter  # instance attribute shadows the method
    oks: list[bool] = []
    try:
        track = measure(lambda frame: oks.append(extractor.track(frame).ok), clip, plan.runs)
    finally:
        del extractor.detector.detect
        extractor.reset()
    rows.append(StageRow("`PalmRoiExtractor.track` (steady hand, tracking)", track))
    rows.append(StageRow("embedding (`PalmEmbedder.embed`)",
                         measure(lambda f: embedder.embed(f.roi), fixtures, plan.runs)))
    return rows, TrackStats(counter.calls, len(oks), sum(oks), len(clip))


def search_latencies(galleries: dict[int, Gallery], embedder: PalmEmbedder, k: int, runs: int,
                     rng: np.random.Generator) -> list[SearchRow]:
    """Section 2: ``PalmIndex.search`` and its FAISS part alone, per gallery size."""
    rows = []
    for n, (index, vectors, codes) in galleries.items():
        picks = rng.choice(n, size=min(n, max(runs, 10)), replace=False)
        queries = noisy_queries(vectors[picks], QUERY_COSINES["0.8-0.9"], rng)
        probes = list(zip(queries, codes[picks], strict=True))
        full = measure(partial(_palm_search, index, k), probes, runs)
        flat = faiss.IndexFlatIP(embedder.dim)
        flat.add(vectors)
        only = measure(partial(_faiss_search, flat, k), probes, runs)
        del flat
        reranked = SAMPLES_PER_IDENTITY * statistics.mean(
            len(index.search(p[0], p[1], k)) for p in probes[:10])
        rows.append(SearchRow(n, len(index.identities), full, only, reranked))
    return rows


def _palm_search(index: PalmIndex, k: int, probe: tuple[np.ndarray, np.ndarray]) -> object:
    return index.search(probe[0], probe[1], k)


def _faiss_search(flat: faiss.Index, k: int, probe: tuple[np.ndarray, np.ndarray]) -> object:
    return flat.search(probe[0][None], k)


def end_to_end(settings: Settings, extractor: PalmRoiExtractor, embedder: PalmEmbedder,
               index: PalmIndex, clip: list[np.ndarray], plan: Plan) -> LiveRow:
    """Section 3: Pipeline.analyze(track=True) + embed + search, per frame of the clip."""
    pipeline = Pipeline(settings, extractor=extractor, embedder=embedder)
    pipeline.reset()
    searched, good = [], []

    def live(frame: np.ndarray) -> None:
        analysis = pipeline.analyze(frame, track=True)
        if analysis.roi.ok:
            [template] = pipeline.templates([replace(analysis, quality=None)])
            index.search(template.vector, template.code, settings.shortlist_k)
        searched.append(analysis.roi.ok)
        good.append(analysis.roi.ok and analysis.quality is not None and analysis.quality.ok)

    timing = measure(live, clip, plan.runs)
    pipeline.reset()
    return LiveRow(len(index), timing, sum(searched), sum(good), len(searched))


def exact_vs_approximate(plan: Plan, dim: int, k: int, threads: int, rng: np.random.Generator
                         ) -> tuple[list[AnnRow], AnnFacts]:
    """Section 4: Flat vs ``plan.ann_factory`` at ``plan.ann_size`` samples."""
    n = plan.ann_size
    vectors = gallery_vectors(n, dim, rng)
    build_threads = max(threads, os.cpu_count() or 1)
    faiss.omp_set_num_threads(build_threads)
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    flat_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    approx = faiss.index_factory(dim, plan.ann_factory, faiss.METRIC_INNER_PRODUCT)
    approx.train(vectors)
    approx.add(vectors)
    approx_build = time.perf_counter() - t0

    picks = rng.choice(n, size=plan.recall_queries, replace=False)
    query_sets = {name: noisy_queries(vectors[picks], cos, rng)
                  for name, cos in QUERY_COSINES.items()}
    del vectors
    # Shortlists (batched, all cores: only the ids matter here).
    exact_ids = {name: flat.search(q, k)[1] for name, q in query_sets.items()}
    faiss.omp_set_num_threads(threads)
    single = query_sets["0.8-0.9"][: max(plan.runs, 10)]

    def row(name: str, build: float, index: faiss.Index) -> AnnRow:
        timing = measure(lambda q: index.search(q[None], k), single, plan.runs)
        faiss.omp_set_num_threads(build_threads)
        recall, genuine = {}, {}
        for qname, q in query_sets.items():
            ids = index.search(q, k)[1]
            recall[qname] = float(np.mean([
                len(set(a.tolist()) & set(b.tolist())) / k
                for a, b in zip(ids, exact_ids[qname], strict=True)]))
            genuine[qname] = float(np.mean((ids == picks[:, None]).any(axis=1)))
        faiss.omp_set_num_threads(threads)
        return AnnRow(name, build, timing, recall, genuine)

    rows = [row("Flat (exact, `PalmIndex` default)", flat_build, flat)]
    ivf = faiss.extract_index_ivf(approx)
    for nprobe in plan.nprobes:
        ivf.nprobe = nprobe
        rows.append(row(f"{plan.ann_factory}, nprobe {nprobe}", approx_build, approx))
    facts = AnnFacts(samples=n, queries=plan.recall_queries, build_threads=build_threads,
                     nlist=ivf.nlist, index_trains=hasattr(PalmIndex, "train"))
    return rows, facts
