"""The issue's targets next to what a run measured: one :class:`Target` row each.

Each target names the measurement it is read from; where the run did not measure it (a section
left out, PostgreSQL unreachable, a smaller largest gallery) the row says so instead of a
number. Nothing here measures or formats tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from palmpay.bench.results import BenchResults, SearchRow
from palmpay.bench.search import BASELINE

__all__ = ["Target", "targets"]


@dataclass(frozen=True)
class Target:
    """One target: what, the goal, the measured value (text) and whether it is met."""

    what: str
    goal: str
    measured: str
    met: bool | None  # None: not measured


def _product(results: BenchResults) -> SearchRow | None:
    rows = [r for r in results.searches if r.structure != BASELINE and r.error is None
            and r.timing.wall]
    if not rows:
        return None
    largest = max(r.samples for r in rows)
    first = [r for r in rows if r.samples == largest]
    default = [r for r in first if r.structure == results.settings.get("default_factory")]
    return (default or first)[0]


def _baseline(results: BenchResults, n: int) -> SearchRow | None:
    for r in results.searches:
        if r.structure == BASELINE and r.samples == n and r.error is None:
            return r
    return None


def targets(results: BenchResults) -> list[Target]:
    """Every target of the issue this bench can read (module docstring)."""
    out = []
    row = _product(results)
    if row is None:
        out.append(Target("1:N search", "measured", "not run", None))
    else:
        at = f" at {row.samples:,}"
        out.append(Target(f"search p99{at} ({row.structure})", "≤ 5 ms",
                          f"{row.timing.p99:.1f} ms", row.timing.p99 <= 5))
        base = _baseline(results, row.samples)
        if base is not None and base.genuine_in_shortlist > 0:
            ratio = row.genuine_in_shortlist / base.genuine_in_shortlist
            out.append(Target(f"genuine in shortlist{at}, vs exact search", "≥ 99.5 %",
                              f"{ratio:.2%} ({row.genuine_in_shortlist:.2%} vs "
                              f"{base.genuine_in_shortlist:.2%})", ratio >= 0.995))
        resident = max(row.rss_delta, row.nbytes or 0)
        out.append(Target(f"resident index{at}, as built", "≤ 1 GB",
                          f"{row.rss_delta / 1e9:.2f} GB RSS"
                          + (f", nbytes {row.nbytes / 1e9:.2f} GB" if row.nbytes else ""),
                          resident <= 1e9))
    for e in results.enrolls:
        out.append(Target(f"durable enrollment into {e.samples:,} ({e.database}), p99",
                          "≤ 10 ms", f"{e.durable.p99:.1f} ms (commit {e.commit.p99:.1f}, "
                          f"index {e.index_add.p99:.1f})", e.durable.p99 <= 10))
    for load in results.loads:
        out.append(Target(f"start-up: load the saved index of {load.samples:,}", "≤ 30 s",
                          f"{load.load_s:.1f} s" + (" (mmap)" if load.mmap else ""),
                          load.load_s <= 30))
        # What a started process holds: the saved index loaded (memory-mapped where it can
        # be) and searched, so the code pages the searches touched are counted too.
        out.append(Target(f"resident index of {load.samples:,}, loaded and searched",
                          "≤ 1 GB", f"{load.rss_delta / 1e9:.2f} GB RSS added"
                          + (" (mmap)" if load.mmap else ""), load.rss_delta <= 1e9))
    for cpu in results.cpu:
        out.append(Target(f"CPU per pay request of {cpu.frames} frames (in-process)",
                          "≤ 60 ms", f"{cpu.total_ms:.0f} ms", cpu.total_ms <= 60))
    pays = [r for r in results.http if r.request.startswith("pay")]
    for db in sorted({r.database for r in pays}):
        top = max((r for r in pays if r.database == db), key=lambda r: r.concurrency)
        out.append(Target(f"pay by palm at concurrency {top.concurrency} ({db})",
                          "≥ 25 /s, p99 ≤ 1 s",
                          f"{top.rps:.1f} /s, p99 {top.timing.p99:.0f} ms, server CPU "
                          f"{top.server_cpu_ms:.0f} ms/request",
                          top.rps >= 25 and top.timing.p99 <= 1000 and top.concurrency >= 16))
    for request in ("capture", "refund"):
        rows = [r for r in results.http if r.request == request and r.database == "PostgreSQL"]
        if rows:
            top = max(rows, key=lambda r: r.concurrency)
            out.append(Target(f"{request} on PostgreSQL at concurrency {top.concurrency}",
                              "≥ 300 /s", f"{top.rps:.0f} /s", top.rps >= 300))
        else:
            out.append(Target(f"{request} on PostgreSQL", "≥ 300 /s", "not measured", None))
    return out
