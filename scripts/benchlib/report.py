"""The Markdown reports: :func:`bench_report` (``docs/bench.md``) and :func:`api_report`
(``docs/bench_api.md``), built from the rows of :mod:`benchlib.results`.

Only formatting happens here; every number comes from the rows and the :class:`Run`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from benchlib.gallery import QUERY_COSINES, SAMPLES_PER_IDENTITY
from benchlib.harness import Run, Timing, blas_threads, load_average, machine_facts, utc_now
from benchlib.results import AnnFacts, AnnRow, ApiResults, BenchResults, LiveRow, TrackStats

__all__ = ["api_report", "bench_report", "table"]


def table(header: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table; ``align`` has one letter per column, ``l`` left or ``r`` right."""
    rule = "".join("---:|" if a == "r" else "---|" for a in align)
    return [_row(header), "|" + rule, *(_row(r) for r in rows)]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _times(t: Timing, cpu: bool = True) -> list[str]:
    """Median and p90 (and the CPU median) in ms, two decimals."""
    return [f"{t.median:.2f}", f"{t.p90:.2f}", *([f"{t.cpu_median:.2f}"] if cpu else [])]


def bench_report(run: Run, r: BenchResults) -> str:
    """The whole of ``docs/bench.md``."""
    plan, k = r.plan, r.shortlist_k
    lines = ["# PalmPay benchmark", ""]
    if r.quick:
        lines += ["**Quick smoke run (`--quick`): few runs, small galleries; do not quote these "
                  "numbers.**", ""]
    lines += [
        "Produced by:", "", "```sh", run.command, "```", "",
        f"in {run.elapsed:.0f} s. Every timing uses {r.threads} onnxruntime / OpenCV / FAISS "
        f"thread(s) (the `Settings` default is `intra_op_threads=1`) and {blas_threads()}; ms "
        "are wall-clock median and 90th percentile, plus the median process-CPU time (the better "
        "cost estimate on a busy machine). How each number is made: the docstring of "
        "`scripts/bench.py`.",
        "", "## Machine", "", "| | |", "|---|---|",
    ]
    lines += [_row(fact) for fact in machine_facts()]
    lines.append(f"| load average (1 min) | {run.load_at_start:.2f} at start, "
                 f"{load_average():.2f} at end (above 0: other work shared the cores) |")

    lines += [
        "", "## Per-stage latency", "",
        f"640×480 synthetic frames (`palmpay.synth`), {r.hands_used} hands in random poses from "
        f"`synth.TEST_RANGES`, {plan.runs} runs per stage cycling through them"
        + (f" ({r.misses} rendered hand(s) gave no ROI and were left out)" if r.misses else "")
        + ".", "",
        *table(["stage", "median ms", "p90 ms", "CPU median ms"], "lrrr",
               [[s.stage, *_times(s.timing)] for s in r.stages]),
        "", _track_note(r.track, plan.runs),
    ]

    lines += [
        "", "## 1:N search", "",
        f"`PalmIndex.search(k={k})` (the `Settings().shortlist_k` default): exact FAISS "
        f"shortlist of {k} samples, then every sample of the shortlisted identities "
        f"re-scored with the code matcher. Galleries are synthetic: {SAMPLES_PER_IDENTITY} "
        "samples per identity, vectors from the gallery model (random, CompCode-like spectrum), "
        "uniformly random codes; queries are enrolled vectors at cosine 0.8-0.9. Timing does not "
        f"depend on the data, only on its size. {plan.runs} queries per gallery.", "",
        *table(["enrolled samples", "identities", "search median ms", "search p90 ms",
                "CPU median ms", "of which FAISS median ms", "codes re-ranked (mean)"], "r" * 7,
               [[f"{s.samples:,}", f"{s.identities:,}", *_times(s.search),
                 f"{s.faiss_only.median:.2f}", f"{s.codes_reranked:.0f}"] for s in r.searches]),
    ]

    live = r.live
    lines += [
        "", "## End-to-end live path", "",
        f"Per frame: `Pipeline.analyze(track=True)` (tracking ROI + quality) + "
        f"`PalmEmbedder.embed` + `PalmIndex.search` in a {live.gallery:,}-sample gallery, on the "
        f"steady-hand clip; embed and search run whenever the ROI is found. {plan.runs} frames.",
        "",
        *table(["path", "median ms", "p90 ms", "CPU median ms", "frames/s at the median"],
               "lrrrr", [[f"analyze(track) + embed + search @ {live.gallery:,}",
                          *_times(live.timing), f"{1000 / live.timing.median:.1f}"]]),
        "", _live_note(live),
    ]

    f = r.ann_facts
    lines += [
        "", "## Exact vs approximate search", "",
        f"{f.samples:,} gallery vectors from the gallery model; "
        f"{f.queries} noisy queries per cosine band (an enrolled vector moved to that "
        "cosine from itself, like a second session of the same palm). Recall@"
        f"{k}: share of the exact top-{k} the index returns. Genuine in "
        f"shortlist: share of queries whose own enrolled sample is in the top-{k} "
        "(if it is not, the code re-rank can never find the palm). Query time: single queries, "
        f"{plan.runs} runs; build time with {f.build_threads} thread(s), including "
        "IVF training.", "",
        *_ann_table(r.ann, k),
        "", _ann_conclusion(r.ann, k, f, live), "",
    ]
    return "\n".join(lines)


def _track_note(t: TrackStats, runs: int) -> str:
    return (f"`track` ran the palm detector {t.detector_calls} time(s) in {t.calls} calls "
            f"(3 warm-up + {runs} timed) over a {t.clip_frames}-frame steady-hand clip, "
            f"cycled; {t.ok_calls}/{t.calls} calls gave a palm ROI.")


def _live_note(live: LiveRow) -> str:
    return (f"{live.searched}/{live.frames} frames reached embed + search (the rest stop "
            f"after the ROI stage); {live.good}/{live.frames} also passed every quality gate "
            "(`Recognizer.replay` only embeds and searches those).")


def _ann_table(rows: list[AnnRow], k: int) -> list[str]:
    bands = list(QUERY_COSINES)
    header = ["index", "build s", "query median ms", "query p90 ms"]
    for c in bands:
        header += [f"recall@{k} (cos {c})", f"genuine in shortlist (cos {c})"]
    body = []
    for row in rows:
        cells = [row.index, f"{row.build_s:.1f}", *_times(row.timing, cpu=False)]
        for c in bands:
            cells += [f"{row.recall[c]:.3f}", f"{row.genuine[c]:.3f}"]
        body.append(cells)
    return table(header, "l" + "r" * (len(header) - 1), body)


def _ann_conclusion(rows: list[AnnRow], k: int, facts: AnnFacts, live: LiveRow) -> str:
    """One paragraph that reads the exact-vs-approximate table."""
    exact, approx = rows[0], rows[1:]
    hard = list(QUERY_COSINES)[-1]
    cheapest = min(approx, key=lambda r: r.timing.median)
    exact_ms, n = exact.timing.median, facts.samples
    recalls = [r.recall[hard] for r in approx]
    genuine = [r.genuine[hard] for r in approx]
    return (
        f"Reading it: at {n:,} samples one exact query costs {exact_ms:.1f} ms on one thread "
        f"(about {1e4 * exact_ms / n:.1f} ms per 10k samples; the whole live frame above is "
        f"{live.timing.median:.0f} ms at {live.gallery:,}), and {cheapest.index} cuts it to "
        f"{cheapest.timing.median:.1f} ms. The price is the shortlist: the approximate ones "
        f"hold {min(recalls):.0%}-{max(recalls):.0%} of the exact top-{k}, and for "
        f"second-session-like queries (cosine {hard}) the genuine sample is in them for only "
        f"{min(genuine):.0%}-{max(genuine):.0%} of queries, against "
        f"{exact.genuine[hard]:.0%} for exact search. A palm missing from the shortlist can "
        "never be matched, whatever the code re-rank does: an approximate index buys "
        "milliseconds with rejected customers. So `PalmIndex` defaults to exact search "
        "(`IDMap2,Flat`); an approximate one is only worth it for galleries where the linear "
        "cost above matters, and then needs its recall re-measured on real second-session data."
        + ("" if facts.index_trains else " (`PalmIndex` has no training step today, so "
           "an IVF factory string cannot be used through it anyway.)")
    )


def api_report(run: Run, r: ApiResults) -> str:
    """The whole of ``docs/bench_api.md``."""
    return "\n".join([
        "# PalmPay HTTP benchmark",
        "",
        f"Produced by `{run.command}` on {utc_now()} in {run.elapsed:.0f} s; {os.cpu_count()} "
        f"cores, load average {load_average():.2f} at the end. Client and server on one machine "
        f"over loopback; {r.customers} synthetic customers enrolled (4 photos each); {r.runs} "
        "sequential requests per row; 640x480 JPEG frames. How it is made: the docstring of "
        "`scripts/bench_api.py`.",
        "",
        *table(["database", "request", "median ms", "p90 ms"], "llrr",
               [[row.database, row.request, f"{row.timing.median:.1f}", f"{row.timing.p90:.1f}"]
                for row in r.rows]),
        "",
        "The two payment rows are the time to approval and the time to a refusal: they should "
        "be close, so that an unknown palm cannot be told from an enrolled one by timing.",
        "",
    ])
