"""PalmPay benchmark: per-stage latency, 1:N search cost, and exact vs approximate FAISS.

    .venv/bin/python scripts/bench.py --out docs/bench.md  # `make bench`: ~1.5 min, 2 GB
    .venv/bin/python scripts/bench.py --quick --out /tmp/b.md  # smoke run, < 30 s

It writes a Markdown report (the numbers, the command that produced them and the machine: CPU
model, cores, library versions, date) to ``--out`` and prints it. Timings are never asserted in
unit tests; this script is the only place they are measured.

What it measures, all with one onnxruntime, OpenCV and FAISS query thread (``--threads``; the
``Settings`` default ``intra_op_threads=1``), as wall-clock median and p90 plus process-CPU
median:

1. **Per-stage latency** on 640x480 synthetic frames from :mod:`palmpay.synth` (10 different
   hands, each in a random pose from ``synth.TEST_RANGES``; runs cycle through them):
   capture quality (:func:`palmpay.capture.assess_quality`), palm detection, landmarks, the ROI
   cut, :meth:`PalmRoiExtractor.extract` (detector every frame) and :meth:`PalmRoiExtractor.track`
   (steady hand: the hold phase of a :func:`synth.presentation_frames` clip, so the detector only
   runs to acquire the hand), and :meth:`PalmEmbedder.embed`.
2. **1:N search**: :meth:`PalmIndex.search` (FAISS shortlist of ``Settings().shortlist_k``
   samples + code re-rank) against galleries of 1k, 10k and 100k enrolled samples, 5 samples per
   identity. Gallery vectors and codes are synthetic (see *gallery and noise model* below);
   search time does not depend on what the vectors look like, only on their number. The FAISS
   part alone is timed too, so the cost of the code re-rank (numpy matrix products) and of the
   Python bookkeeping is visible.
3. **End-to-end live path** per frame: ``Pipeline.analyze(track=True)`` + embed + search in the
   10k gallery, on the steady-hand clip.
4. **Exact vs approximate FAISS** at 100k: ``Flat`` (what ``PalmIndex`` uses) against
   ``IVF1024,Flat`` at two ``nprobe`` values: build time, single-query time, recall@k of the
   approximate shortlist against the exact one, and how often the query's own enrolled sample
   (the genuine palm) is in the shortlist at all. Queries are enrolled vectors moved to a set
   cosine from the original: 0.8-0.9, like a second session of the same palm, and 0.5-0.7, where
   real second sessions sit (the median cross-session cosine of ``compcode.onnx`` vectors on the
   Tongji sessions protocol is about 0.6).

Gallery and noise model: random unit vectors in the embedder's 1176 dimensions are nearly
orthogonal, which real CompCode vectors are not (they share a mean direction and most of their
variance lies in a few hundred directions), and an IVF index behaves very differently on the two.
So gallery vectors are ``normalise(m + z)``: ``m`` a fixed random direction of norm 0.344, ``z``
Gaussian with total variance 0.882 and the variance of axis i proportional to (i + 20)^-1.8.
Session noise is not isotropic either: between two sessions of a real palm the vector moves
mostly within the same few hundred directions (84 % of the difference's energy lies in the top
200 principal directions of the data, against 17 % for isotropic noise), so query noise is
Gaussian with variance proportional to (i + 300)^-4 on the same axes, its component along the
enrolled vector removed, and mixed in to give the exact cosine drawn. These constants were fitted
to ``compcode.onnx`` vectors of 100 Tongji palms (mean norm, total variance, cumulative spectra
within 0.05) and give impostor cosines of median 0.12 and 99.9th percentile 0.41, as measured
(0.11 and 0.41). Isotropic query noise is much kinder to IVF (the genuine sample is almost always
in its shortlist); it is not what real second sessions look like. Codes are uniformly random bytes.

``--quick`` uses fewer runs, 3 hands, galleries of 1k and 5k and ``IVF64,Flat`` at 5k: a smoke
test of the script (``tests/test_bench_smoke.py``), not numbers to quote.
"""

from __future__ import annotations

# The live re-rank (a few probes) uses XOR/popcount, not BLAS, so numpy's BLAS threads are left
# as the product runs them; an explicit OPENBLAS_NUM_THREADS in the environment is reported.
import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import faiss
import numpy as np
import onnxruntime

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

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
FRAME_SIZE = (640, 480)
SAMPLES_PER_IDENTITY = 5
#: Gallery and query-noise model (see the module docstring), fitted to compcode.onnx vectors of
#: the Tongji sessions: common mean norm, total variance, and the variance of the i-th axis
#: (1-based) proportional to (i + offset) ** -power, for palms and for session-to-session noise.
MEAN_NORM = 0.344
TOTAL_VARIANCE = 0.882
GALLERY_SPECTRUM = (20.0, 1.8)
NOISE_SPECTRUM = (300.0, 4.0)
#: Query cosine ranges to the enrolled original, for the recall experiment.
QUERY_COSINES = {"0.8-0.9": (0.8, 0.9), "0.5-0.7": (0.5, 0.7)}


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    runs: int
    hands: int
    clip_frames: int
    galleries: tuple[int, ...]
    e2e_gallery: int
    ann_size: int
    ann_factory: str
    nprobes: tuple[int, ...]
    recall_queries: int


FULL = Plan(100, 10, 30, (1_000, 10_000, 100_000), 10_000, 100_000, "IVF1024,Flat", (16, 64), 1000)
QUICK = Plan(10, 3, 8, (1_000, 5_000), 5_000, 5_000, "IVF64,Flat", (4, 16), 100)


@dataclass(frozen=True)
class Timing:
    """Per-call wall and process-CPU times in ms."""

    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def p90(self) -> float:
        return float(np.percentile(self.wall, 90))

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


@dataclass(frozen=True)
class Fixture:
    """One rendered frame and everything the later stages need from the earlier ones."""

    frame: np.ndarray
    rect: RotatedRect
    hand: Hand
    region: tuple[int, int, int, int]
    palm_width: float
    roi: np.ndarray


def measure(func: Callable[[object], object], items: Sequence[object], runs: int,
            warmup: int = 3) -> Timing:
    """Time ``func(item)`` ``runs`` times, cycling through ``items``, after ``warmup`` calls."""
    for i in range(warmup):
        func(items[i % len(items)])
    wall, cpu = [], []
    for i in range(runs):
        item = items[i % len(items)]
        w0, c0 = time.perf_counter(), time.process_time()
        func(item)
        wall.append(1000 * (time.perf_counter() - w0))
        cpu.append(1000 * (time.process_time() - c0))
    return Timing(wall, cpu)


class CallCounter:
    """Wraps a callable and counts its calls (to see how often ``track`` ran the detector)."""

    def __init__(self, func: Callable[..., object]) -> None:
        self.func = func
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self.func(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench.md",
                        help="Markdown report to write")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: fewer runs, smaller galleries (< 30 s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime intra-op, OpenCV and FAISS query threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    args = parser.parse_args(argv)
    command = command_line(argv)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]

    settings = Settings(intra_op_threads=args.threads)
    cv2.setNumThreads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    extractor = PalmRoiExtractor(settings)
    embedder = PalmEmbedder(settings)
    rng = np.random.default_rng(args.seed)

    fixtures, misses = render_fixtures(extractor, plan.hands, args.seed)
    if not fixtures:
        raise SystemExit("no synthetic hand gave a palm ROI; the ROI stage is broken")
    clip = synth.presentation_frames(
        synth.HandIdentity.from_seed(args.seed), n_frames=plan.clip_frames, seed=args.seed,
        size=FRAME_SIZE, enter_fraction=0.0, leave_fraction=0.0)

    stage_rows, track_note = stage_latencies(settings, extractor, embedder, fixtures, clip, plan)
    galleries = {n: build_gallery(n, embedder, rng) for n in plan.galleries}
    search_rows = search_latencies(galleries, embedder, settings.shortlist_k, plan.runs, rng)
    e2e_row, e2e_note = end_to_end(settings, extractor, embedder, galleries[plan.e2e_gallery][0],
                                   clip, plan)
    del galleries
    ann_rows, ann_facts = exact_vs_approximate(plan, embedder.dim, settings.shortlist_k,
                                               args.threads, rng)

    report = render_report(
        command=command, plan=plan, quick=args.quick, threads=args.threads,
        shortlist_k=settings.shortlist_k, hands_used=len(fixtures), misses=misses,
        stage_rows=stage_rows, track_note=track_note, search_rows=search_rows,
        e2e_row=e2e_row, e2e_note=e2e_note, ann_rows=ann_rows, ann_facts=ann_facts,
        elapsed=time.perf_counter() - started, load_at_start=load_at_start,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0


# -- fixtures ----------------------------------------------------------------------------------
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


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def spectrum_scale(dim: int, offset: float, power: float) -> np.ndarray:
    """Per-axis standard deviations, variance ∝ (i + offset) ** -power, unit total variance."""
    variance = (np.arange(1, dim + 1, dtype=np.float64) + offset) ** -power
    return np.sqrt(variance / variance.sum())


def gallery_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors from the gallery model of the module docstring (float32)."""
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


# -- measurements ------------------------------------------------------------------------------
def stage_latencies(settings: Settings, extractor: PalmRoiExtractor, embedder: PalmEmbedder,
                    fixtures: list[Fixture], clip: list[np.ndarray], plan: Plan
                    ) -> tuple[list[tuple[str, Timing]], str]:
    """Section 1: one row per pipeline stage."""
    rows = [
        ("capture quality (`assess_quality`)",
         measure(lambda f: assess_quality(f.frame, f.region, f.palm_width, settings),
                 fixtures, plan.runs)),
        (f"palm detection (`PalmDetector.detect`, {settings.palm_detector})",
         measure(lambda f: extractor.detector.detect(f.frame), fixtures, plan.runs)),
        (f"landmarks (`HandLandmarker.run`, {settings.hand_landmarker})",
         measure(lambda f: extractor.landmarker.run(f.frame, f.rect), fixtures, plan.runs)),
        ("ROI cut (`palm_roi`)", measure(lambda f: palm_roi(f.frame, f.hand), fixtures, plan.runs)),
        ("`PalmRoiExtractor.extract` (detection every frame)",
         measure(lambda f: extractor.extract(f.frame), fixtures, plan.runs)),
    ]
    extractor.reset()
    counter = CallCounter(extractor.detector.detect)
    extractor.detector.detect = counter  # instance attribute shadows the method
    oks = []
    try:
        track = measure(lambda frame: oks.append(extractor.track(frame).ok), clip, plan.runs)
    finally:
        del extractor.detector.detect
        extractor.reset()
    rows.append(("`PalmRoiExtractor.track` (steady hand, tracking)", track))
    rows.append(("embedding (`PalmEmbedder.embed`)",
                 measure(lambda f: embedder.embed(f.roi), fixtures, plan.runs)))
    note = (f"`track` ran the palm detector {counter.calls} time(s) in {len(oks)} calls "
            f"(3 warm-up + {plan.runs} timed) over a {len(clip)}-frame steady-hand clip, "
            f"cycled; {sum(oks)}/{len(oks)} calls gave a palm ROI.")
    return rows, note


def search_latencies(galleries: dict[int, tuple[PalmIndex, np.ndarray, np.ndarray]],
                     embedder: PalmEmbedder, k: int, runs: int, rng: np.random.Generator
                     ) -> list[tuple[int, int, Timing, Timing, float]]:
    """Section 2: (samples, identities, PalmIndex.search timing, FAISS-only timing, mean codes
    re-ranked per search) rows."""
    rows = []
    for n, (index, vectors, codes) in galleries.items():
        picks = rng.choice(n, size=min(n, max(runs, 10)), replace=False)
        queries = noisy_queries(vectors[picks], QUERY_COSINES["0.8-0.9"], rng)
        probes = list(zip(queries, codes[picks], strict=True))
        full = measure(lambda p, index=index: index.search(p[0], p[1], k), probes, runs)
        flat = faiss.IndexFlatIP(embedder.dim)
        flat.add(vectors)
        only = measure(lambda p, flat=flat: flat.search(p[0][None], k), probes, runs)
        del flat
        reranked = SAMPLES_PER_IDENTITY * statistics.mean(
            len(index.search(p[0], p[1], k)) for p in probes[:10])
        rows.append((n, len(index.identities), full, only, reranked))
    return rows


def end_to_end(settings: Settings, extractor: PalmRoiExtractor, embedder: PalmEmbedder,
               index: PalmIndex, clip: list[np.ndarray], plan: Plan
               ) -> tuple[tuple[int, Timing], str]:
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
    note = (f"{sum(searched)}/{len(searched)} frames reached embed + search (the rest stop "
            f"after the ROI stage); {sum(good)}/{len(good)} also passed every quality gate "
            "(`Recognizer.replay` only embeds and searches those).")
    return (len(index), timing), note


def exact_vs_approximate(plan: Plan, dim: int, k: int, threads: int, rng: np.random.Generator
                         ) -> tuple[list[dict[str, object]], dict[str, object]]:
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

    def row(name: str, build: float, index: faiss.Index) -> dict[str, object]:
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
        return {"index": name, "build_s": build, "timing": timing, "recall": recall,
                "genuine": genuine}

    rows = [row("Flat (exact, `PalmIndex` default)", flat_build, flat)]
    ivf = faiss.extract_index_ivf(approx)
    for nprobe in plan.nprobes:
        ivf.nprobe = nprobe
        rows.append(row(f"{plan.ann_factory}, nprobe {nprobe}", approx_build, approx))
    facts = {"samples": n, "queries": plan.recall_queries, "build_threads": build_threads,
             "nlist": ivf.nlist}
    return rows, facts


# -- report ------------------------------------------------------------------------------------
def command_line(argv: list[str] | None) -> str:
    """The command as typed from the repository root (interpreter path relative if inside)."""
    python = Path(sys.executable)
    try:
        python_shown = str(python.relative_to(Path.cwd()))
    except ValueError:
        python_shown = str(python)
    script = Path(__file__).resolve()
    try:
        script_shown = str(script.relative_to(Path.cwd()))
    except ValueError:
        script_shown = str(script)
    rest = sys.argv[1:] if argv is None else argv
    return shlex.join([python_shown, script_shown, *rest])


def machine_facts() -> list[tuple[str, str]]:
    cpu = platform.processor() or "unknown"
    mem = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        commit = (commit + (" + uncommitted changes" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        ("memory", mem),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("onnxruntime", onnxruntime.__version__),
        ("faiss", faiss.__version__),
        ("numpy", np.__version__),
        ("OpenCV", cv2.__version__),
        ("numpy BLAS threads", f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"),
        ("palmpay commit", commit),
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def render_report(*, command: str, plan: Plan, quick: bool, threads: int, shortlist_k: int,
                  hands_used: int, misses: int, stage_rows: list[tuple[str, Timing]],
                  track_note: str, search_rows: list[tuple[int, int, Timing, Timing, float]],
                  e2e_row: tuple[int, Timing], e2e_note: str,
                  ann_rows: list[dict[str, object]], ann_facts: dict[str, object],
                  elapsed: float, load_at_start: float) -> str:
    lines = ["# PalmPay benchmark", ""]
    if quick:
        lines += ["**Quick smoke run (`--quick`): few runs, small galleries; do not quote these "
                  "numbers.**", ""]
    lines += [
        "Produced by:", "", "```sh", command, "```", "",
        f"in {elapsed:.0f} s. Every timing uses {threads} onnxruntime / OpenCV / FAISS thread(s) "
        "(the `Settings` default is `intra_op_threads=1`) and OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}; ms are wall-clock median and 90th "
        "percentile, plus the median process-CPU time (the better cost estimate on a busy "
        "machine). How each number is made: the docstring of `scripts/bench.py`.",
        "", "## Machine", "", "| | |", "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in machine_facts()]
    lines.append(f"| load average (1 min) | {load_at_start:.2f} at start, "
                 f"{os.getloadavg()[0]:.2f} at end (above 0: other work shared the cores) |")

    lines += [
        "", "## Per-stage latency", "",
        f"640×480 synthetic frames (`palmpay.synth`), {hands_used} hands in random poses from "
        f"`synth.TEST_RANGES`, {plan.runs} runs per stage cycling through them"
        + (f" ({misses} rendered hand(s) gave no ROI and were left out)" if misses else "")
        + ".", "",
        "| stage | median ms | p90 ms | CPU median ms |", "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {t.median:.2f} | {t.p90:.2f} | {t.cpu_median:.2f} |"
              for name, t in stage_rows]
    lines += ["", track_note]

    lines += [
        "", "## 1:N search", "",
        f"`PalmIndex.search(k={shortlist_k})` (the `Settings().shortlist_k` default): exact FAISS "
        f"shortlist of {shortlist_k} samples, then every sample of the shortlisted identities "
        f"re-scored with the code matcher. Galleries are synthetic: {SAMPLES_PER_IDENTITY} "
        "samples per identity, vectors from the gallery model (random, CompCode-like spectrum), "
        "uniformly random codes; queries are enrolled vectors at cosine 0.8-0.9. Timing does not "
        f"depend on the data, only on its size. {plan.runs} queries per gallery.", "",
        "| enrolled samples | identities | search median ms | search p90 ms | "
        "CPU median ms | of which FAISS median ms | codes re-ranked (mean) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {n:,} | {ids:,} | {t.median:.2f} | {t.p90:.2f} | {t.cpu_median:.2f} | "
              f"{f.median:.2f} | {codes:.0f} |" for n, ids, t, f, codes in search_rows]

    n, t = e2e_row
    live_ms = t.median
    lines += [
        "", "## End-to-end live path", "",
        f"Per frame: `Pipeline.analyze(track=True)` (tracking ROI + quality) + "
        f"`PalmEmbedder.embed` + `PalmIndex.search` in a {n:,}-sample gallery, on the "
        f"steady-hand clip; embed and search run whenever the ROI is found. {plan.runs} frames.",
        "",
        "| path | median ms | p90 ms | CPU median ms | frames/s at the median |",
        "|---|---:|---:|---:|---:|",
        f"| analyze(track) + embed + search @ {n:,} | {t.median:.2f} | {t.p90:.2f} | "
        f"{t.cpu_median:.2f} | {1000 / t.median:.1f} |",
        "", e2e_note,
    ]

    names = list(QUERY_COSINES)
    lines += [
        "", "## Exact vs approximate search", "",
        f"{ann_facts['samples']:,} gallery vectors from the gallery model; "
        f"{ann_facts['queries']} noisy queries per cosine band (an enrolled vector moved to that "
        "cosine from itself, like a second session of the same palm). Recall@"
        f"{shortlist_k}: share of the exact top-{shortlist_k} the index returns. Genuine in "
        f"shortlist: share of queries whose own enrolled sample is in the top-{shortlist_k} "
        "(if it is not, the code re-rank can never find the palm). Query time: single queries, "
        f"{plan.runs} runs; build time with {ann_facts['build_threads']} thread(s), including "
        "IVF training.", "",
        "| index | build s | query median ms | query p90 ms | "
        + " | ".join(f"recall@{shortlist_k} (cos {c}) | genuine in shortlist (cos {c})"
                     for c in names) + " |",
        "|---|---:|---:|---:|" + "---:|" * (2 * len(names)),
    ]
    for row in ann_rows:
        timing = row["timing"]
        cells = " | ".join(f"{row['recall'][c]:.3f} | {row['genuine'][c]:.3f}" for c in names)
        lines.append(f"| {row['index']} | {row['build_s']:.1f} | {timing.median:.2f} | "
                     f"{timing.p90:.2f} | {cells} |")
    lines += ["", ann_conclusion(ann_rows, shortlist_k, int(ann_facts["samples"]), live_ms,
                                 e2e_row[0]), ""]
    return "\n".join(lines)


def ann_conclusion(rows: list[dict[str, object]], k: int, n: int, live_ms: float,
                   live_n: int) -> str:
    """One paragraph that reads the exact-vs-approximate table."""
    exact, approx = rows[0], rows[1:]
    hard = list(QUERY_COSINES)[-1]
    cheapest = min(approx, key=lambda r: r["timing"].median)
    exact_ms = exact["timing"].median
    recalls = [r["recall"][hard] for r in approx]
    genuine = [r["genuine"][hard] for r in approx]
    return (
        f"Reading it: at {n:,} samples one exact query costs {exact_ms:.1f} ms on one thread "
        f"(about {1e4 * exact_ms / n:.1f} ms per 10k samples; the whole live frame above is "
        f"{live_ms:.0f} ms at {live_n:,}), and {cheapest['index']} cuts it to "
        f"{cheapest['timing'].median:.1f} ms. The price is the shortlist: the approximate ones "
        f"hold {min(recalls):.0%}-{max(recalls):.0%} of the exact top-{k}, and for "
        f"second-session-like queries (cosine {hard}) the genuine sample is in them for only "
        f"{min(genuine):.0%}-{max(genuine):.0%} of queries, against "
        f"{exact['genuine'][hard]:.0%} for exact search. A palm missing from the shortlist can "
        "never be matched, whatever the code re-rank does: an approximate index buys "
        "milliseconds with rejected customers. So `PalmIndex` defaults to exact search "
        "(`IDMap2,Flat`); an approximate one is only worth it for galleries where the linear "
        "cost above matters, and then needs its recall re-measured on real second-session data."
        + ("" if hasattr(PalmIndex, "train") else " (`PalmIndex` has no training step today, so "
           "an IVF factory string cannot be used through it anyway.)")
    )


if __name__ == "__main__":
    sys.exit(main())
