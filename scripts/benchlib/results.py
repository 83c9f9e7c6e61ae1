"""The plain rows the experiments return and the reports turn into Markdown.

Frozen dataclasses only: no measuring and no formatting here, so an experiment can be run and
its rows inspected (or rendered some other way) on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchlib.harness import Timing


@dataclass(frozen=True)
class Plan:
    """How much ``bench.py`` measures."""

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
class StageRow:
    """One pipeline stage and its timing."""

    stage: str
    timing: Timing


@dataclass(frozen=True)
class TrackStats:
    """How ``PalmRoiExtractor.track`` behaved on the steady-hand clip (warm-up calls included)."""

    detector_calls: int
    calls: int
    ok_calls: int
    clip_frames: int


@dataclass(frozen=True)
class SearchRow:
    """``PalmIndex.search`` against one gallery size, and the FAISS part of it alone."""

    samples: int
    identities: int
    search: Timing
    faiss_only: Timing
    codes_reranked: float


@dataclass(frozen=True)
class LiveRow:
    """The end-to-end live path per frame, and how many frames went how far."""

    gallery: int
    timing: Timing
    searched: int
    good: int
    frames: int


@dataclass(frozen=True)
class AnnRow:
    """One FAISS index of the exact-vs-approximate comparison; rates per query cosine band."""

    index: str
    build_s: float
    timing: Timing
    recall: dict[str, float]
    genuine: dict[str, float]


@dataclass(frozen=True)
class AnnFacts:
    """What the exact-vs-approximate rows were measured on."""

    samples: int
    queries: int
    build_threads: int
    nlist: int
    #: Whether ``PalmIndex`` can train an index (an IVF factory string needs that).
    index_trains: bool


@dataclass(frozen=True)
class BenchResults:
    """Everything ``bench.py`` measured, for :func:`benchlib.report.bench_report`."""

    plan: Plan
    quick: bool
    threads: int
    shortlist_k: int
    hands_used: int
    misses: int
    stages: list[StageRow]
    track: TrackStats
    searches: list[SearchRow]
    live: LiveRow
    ann: list[AnnRow]
    ann_facts: AnnFacts


@dataclass(frozen=True)
class ApiRow:
    """One request type of ``bench_api.py`` against one database."""

    database: str
    request: str
    timing: Timing


@dataclass(frozen=True)
class ApiResults:
    """Everything ``bench_api.py`` measured, for :func:`benchlib.report.api_report`."""

    customers: int
    runs: int
    rows: list[ApiRow]
