"""The figures of docs/benchmarks.md (matplotlib, PNG), from a :class:`BenchResults`.

- ``search_latency.png``: p50 and p99 per query against gallery size, per structure;
- ``memory.png``: resident memory added by the index (and its ``nbytes``) against size;
- ``http.png``: pay-by-palm requests/s (and p99) against concurrency, per database;
- ``distractors.png``: cosine and code-score distributions of real impostors and synthetic
  distractors against the real probes (and the genuine ones).

matplotlib is imported here only, with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from palmpay.bench.results import BenchResults

__all__ = ["all_plots"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_structure(results: BenchResults) -> dict[str, list]:
    out: dict[str, list] = {}
    for row in results.searches:
        if row.error is None and row.timing.wall:
            out.setdefault(row.structure, []).append(row)
    return {k: sorted(v, key=lambda r: r.samples) for k, v in out.items()}


def search_latency(results: BenchResults, path: Path) -> Path | None:
    rows = _by_structure(results)
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for i, (name, rs) in enumerate(rows.items()):
        colour = f"C{i}"
        n = [r.samples for r in rs]
        ax.plot(n, [r.timing.p50 for r in rs], "o-", color=colour, label=f"{name} p50")
        ax.plot(n, [r.timing.p99 for r in rs], "s--", color=colour, label=f"{name} p99")
    ax.axhline(5, color="grey", lw=0.8, ls=":", label="target p99 5 ms")
    return _save_log_log(plt, fig, ax, path, "ms per query (one thread)", "1:N search latency")


def memory(results: BenchResults, path: Path) -> Path | None:
    rows = _by_structure(results)
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for i, (name, rs) in enumerate(rows.items()):
        n = [r.samples for r in rs]
        ax.plot(n, [max(r.rss_delta, 1) / 2**20 for r in rs], "o-", color=f"C{i}",
                label=f"{name}: resident (RSS delta)")
        sized = [r for r in rs if r.nbytes]
        if sized:
            ax.plot([r.samples for r in sized], [r.nbytes / 2**20 for r in sized], "x:",
                    color=f"C{i}", label=f"{name}: nbytes")
    ax.axhline(1e9 / 2**20, color="grey", lw=0.8, ls=":", label="target 1 GB")
    return _save_log_log(plt, fig, ax, path, "MiB", "Index memory")


def http(results: BenchResults, path: Path) -> Path | None:
    pays = [r for r in results.http if r.request.startswith("pay")]
    if not pays:
        return None
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=120)
    for i, db in enumerate(sorted({r.database for r in pays})):
        rs = sorted((r for r in pays if r.database == db), key=lambda r: r.concurrency)
        c = [r.concurrency for r in rs]
        ax.plot(c, [r.rps for r in rs], "o-", color=f"C{i}", label=db)
        bx.plot(c, [r.timing.p50 for r in rs], "o-", color=f"C{i}", label=f"{db} p50")
        bx.plot(c, [r.timing.p99 for r in rs], "s--", color=f"C{i}", label=f"{db} p99")
    ax.axhline(25, color="grey", lw=0.8, ls=":", label="target 25/s at 16")
    bx.axhline(1000, color="grey", lw=0.8, ls=":", label="target p99 1 s")
    levels = sorted({r.concurrency for r in pays})
    for a, label in ((ax, "pay-by-palm requests / s"), (bx, "ms per request")):
        a.set_xscale("log", base=2)
        a.set_xticks(levels, [str(c) for c in levels])
        a.set_xlabel("concurrent clients")
        a.set_ylabel(label)
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle("POST /v1/payments (4 frames) against palmpay serve, loopback", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def distractors(results: BenchResults, path: Path) -> Path | None:
    if not results.distributions:
        return None
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=120)
    for i, row in enumerate(results.distributions):
        kw = {"bins": 60, "density": True, "histtype": "step", "color": f"C{i}",
              "label": row.group}
        ax.hist(row.cosine_sample, **kw)
        bx.hist(row.code_sample, **kw)
    ax.set_xlabel("cosine to a real probe (shortlist score)")
    bx.set_xlabel("code score to a real probe (decision score)")
    bx.axvline(results.settings.get("threshold", 0.0), color="grey", lw=0.8, ls=":",
               label="decision threshold")
    for a in (ax, bx):
        a.set_yscale("log")
        a.set_ylabel("density")
        a.grid(True, alpha=0.3)
    bx.legend(fontsize=7)
    fig.suptitle("Synthetic distractors vs real impostors, against real session-2 probes",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def all_plots(results: BenchResults, folder: Path) -> dict[str, Path]:
    """Every figure that has data, written into ``folder``; name → path."""
    out = {}
    for name, func in (("search_latency", search_latency), ("memory", memory),
                       ("http", http), ("distractors", distractors)):
        path = func(results, folder / f"{name}.png")
        if path is not None:
            out[name] = path
    return out


def _save_log_log(plt: Any, fig: Any, ax: Any, path: Path, ylabel: str, title: str) -> Path:
    """Log-log axes over the enrolled samples, grid, legend and title; saves and closes."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("enrolled samples")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
