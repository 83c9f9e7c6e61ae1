"""The Markdown of docs/benchmarks.md, from a :class:`BenchResults` (formatting only).

Every number comes from the results; the targets table from :mod:`palmpay.bench.targets`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from palmpay.bench.results import BenchResults, SearchRow
from palmpay.bench.search import BASELINE
from palmpay.bench.targets import targets

__all__ = ["render", "table"]

_MIB = 2**20


def table(header: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table; ``align`` has one letter per column, ``l`` left or ``r`` right."""
    rule = "".join("---:|" if a == "r" else "---|" for a in align)
    return [_row(header), "|" + rule, *(_row(r) for r in rows)]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.2%}"


def _header(r: BenchResults) -> list[str]:
    lines = ["# PalmPay benchmarks", ""]
    if r.quick:
        lines += ["**Quick smoke run (`--quick`): tiny sizes; do not quote these numbers.**", ""]
    lines += ["Produced by:", "", "```sh", r.command, "```", "",
              f"in {r.elapsed_s / 60:.1f} min (`make bench` runs the same). Timings are wall-clock "
              "p50 / p99 per call, with one onnxruntime / OpenCV / FAISS thread per request unless "
              "a row says otherwise; *CPU* is process CPU time. This machine is shared and noisy, "
              "so every figure is also given as a ratio to a baseline measured in the same run. "
              "How each number is made: the docstrings of `palmpay/bench/` (one module per "
              "section). The raw numbers are in "
              "[`benchmarks/results.json`](benchmarks/results.json) "
              "(`palmpay bench --from-json docs/benchmarks/results.json` renders this page "
              "again).", "", "## Machine", "", "| | |", "|---|---|"]
    lines += [_row(f) for f in r.machine]
    lines.append(f"| load average (1 min) | {r.load_start:.2f} at start, {r.load_end:.2f} at end "
                 "(above 0: other work shared the cores) |")
    s = r.settings
    lines += ["", f"Settings: shortlist k = {s.get('shortlist_k')} samples, `PalmIndex` default "
              f"factory `{s.get('default_factory')}`, code re-rank ±{s.get('max_shift')} cells, "
              f"decision threshold {_f(s.get('threshold'), 4)}, liveness "
              f"`{s.get('liveness')}`. Sections run: {', '.join(s.get('sections', []))}."]
    return lines


def _targets(r: BenchResults) -> list[str]:
    verdict = {True: "**met**", False: "**not met**", None: "not measured"}
    return ["", "## Targets (issue #11)", "",
            *table(["target", "goal", "measured", ""], "llll",
                   [[t.what, t.goal, t.measured, verdict[t.met]] for t in targets(r)])]


def _gallery(r: BenchResults, figures: dict[str, str]) -> list[str]:
    g = r.gallery
    lines = ["", "## The gallery and the probes", "",
             f"Real palms first: {g['real_rows']:,} templates (the first 4 session-1 images of "
             "250 tongji-dev palms, every coep-dev photo whose ROI was found), then "
             f"{g['rendered_rows']:,} rendered distractors (synthetic palm prints through the real "
             "embedder), then model distractors (vectors from a Gaussian fitted to the real "
             "tongji templates, codes patched together from the rendered ones), 4 samples per "
             "identity; each smaller gallery is a prefix of the larger. Probes: "
             f"{g['genuine_probes']:,} real genuine session-2 images of the enrolled tongji "
             f"palms and {g['stranger_probes']:,} session-2 images of 50 tongji palms never "
             "enrolled. All templates come from `PalmEmbedder` (`palmpay/bench/gallery.py`, "
             "`distractors.py`; cached under `.work/bench/<model hash>/`).", "",
             "### Synthetic distractors against real impostors", "",
             "Scores of real genuine probes against each group (quantiles of all pairs; the "
             "share at or above the decision threshold is the false-match rate per pair):", "",
             *table(["group", "pairs", "cosine p50", "p99", "p99.9", "max", "code p50", "p99",
                     "p99.9", "max", "code ≥ threshold"], "lrrrrrrrrrr",
                    [[d.group, f"{d.pairs:,}", *[_f(v, 3) for v in d.cosine],
                      *[_f(v, 3) for v in d.code], f"{d.above_threshold:.1e}"]
                     for d in r.distributions])]
    by = {d.group.split(" ")[0]: d for d in r.distributions}
    real, rendered, model = by.get("real"), by.get("rendered"), by.get("model")
    if real and rendered and model:
        lines += ["", _realism(real.cosine, rendered.cosine, model.cosine, "cosine")
                  + " " + _realism(real.code, rendered.code, model.code, "code score") +
                  " The cosine decides which samples reach the shortlist (and how an "
                  "approximate index partitions them); the code score decides the match. A "
                  "model sample's vector and code are independent draws, where a real palm's "
                  "are two views of one image. Where a synthetic tail sits below the real one, "
                  "a gallery of that size is easier for the decision (top-1, false matches) "
                  "than a real one would be; search time does not depend on the values."]
    if "distractors" in figures:
        lines += ["", f"![distractor distributions]({figures['distractors']})"]
    return lines


def _realism(real: list[float], rendered: list[float], model: list[float], what: str) -> str:
    def word(x: list[float]) -> str:
        d = x[2] - real[2]
        if abs(d) < 0.01:
            return f"matches the real impostors' ({x[2]:.3f} vs {real[2]:.3f} at p99.9)"
        side = "above" if d > 0 else "below"
        easier = "harder" if d > 0 else "easier"
        return f"sits {side} them ({x[2]:.3f} vs {real[2]:.3f} at p99.9: {easier} than real)"

    return (f"By {what}, the rendered distractors' tail {word(rendered)}, the model "
            f"distractors' {word(model)}.")


def structure_name(structure: str, r: BenchResults) -> str:
    """How a structure is shown: the baseline by name, factories as code, the default marked."""
    if structure == BASELINE:
        return structure
    return f"`{structure}`" + (" (default)" if structure == r.settings.get("default_factory")
                               else "")


def _search(r: BenchResults, figures: dict[str, str]) -> list[str]:
    if not r.searches:
        return []
    base = {row.samples: row for row in r.searches if row.structure == BASELINE}

    def cells(row: SearchRow) -> list[str]:
        if row.error:
            return [structure_name(row.structure, r), f"{row.samples:,}", *["–"] * 11,
                    f"failed: {row.error}"]
        b = base.get(row.samples)
        speed = (f"{row.timing.p50 / b.timing.p50:.2g}×" if b and b.timing.wall and
                 row is not b else "1×" if row is b else "–")
        recall = (f"{row.genuine_in_shortlist / b.genuine_in_shortlist:.2%}"
                  if b and b.genuine_in_shortlist else "–")
        build = ("untrained (exact buffer)" if row.trained is False
                 else f"{row.train_s:.1f} + {row.build_s:.1f}")
        return [structure_name(row.structure, r), f"{row.samples:,}", f"{row.identities:,}",
                build, f"{row.rss_delta / _MIB:,.0f}",
                "–" if row.nbytes is None else f"{row.nbytes / _MIB:,.0f}",
                _f(row.timing.p50, 2), _f(row.timing.p99, 2), _f(row.timing.cpu_p50, 2), speed,
                _pct(row.genuine_in_shortlist), recall, _pct(row.top1),
                f"{row.timing.count} / {row.recall_probes}"]

    lines = ["", "## 1:N search", "",
             f"Per structure and gallery size, in a fresh process each: build (train + add "
             "seconds), resident memory the index added (RSS, MiB) and its own `nbytes`, single "
             "queries on one thread (half genuine probes, half strangers: "
             "`PalmIndex.search`, i.e. shortlist + code re-rank; the baseline: a bare FAISS "
             "`IndexFlatIP` search, exact, no re-rank), p50 as a multiple of the baseline's, the "
             "share of genuine probes whose palm is in the shortlist and that share relative to "
             "exact search's, and top-1 (the best match is the genuine palm, among the timed "
             f"genuine queries). k = {r.settings.get('shortlist_k')} samples.", "",
             *table(["structure", "samples", "identities", "build s", "RSS MiB", "nbytes MiB",
                     "p50 ms", "p99 ms", "CPU p50 ms", "p50 vs exact", "genuine in shortlist",
                     "vs exact", "top-1", "queries / recall probes"], "lrrrrrrrrrrrrr",
                    [cells(row) for row in sorted(r.searches, key=lambda x: (x.samples,
                                                  x.structure != BASELINE, x.structure))])]
    misses = [f"{row.samples:,}: {1 - row.genuine_in_shortlist:.1%}" for row in
              sorted(base.values(), key=lambda x: x.samples) if row.error is None]
    if misses:
        lines += ["", "Exact search itself leaves the genuine palm out of the top "
                  f"{r.settings.get('shortlist_k')} samples for a share of the genuine probes "
                  f"that grows with the gallery ({'; '.join(misses)}): those probes can never be "
                  "identified at that k whatever the structure, and an approximate structure "
                  "can only lose more (the *vs exact* column)."]
    for name in ("search_latency", "memory"):
        if name in figures:
            lines += ["", f"![{name}]({figures[name]})"]
    return lines


def _startup(r: BenchResults) -> list[str]:
    lines: list[str] = []
    if r.enrolls:
        sqlite = next((e for e in r.enrolls if e.database == "SQLite"), None)
        lines += ["", "## Enrollment into the full index", "",
                  "New customers (4 photos of a never-enrolled palm) into the index of the "
                  "largest search row, the way `POST /v1/customers` does: the duplicate-palm "
                  "check (`PalmDirectory.match` of the 4 templates), the database commit of "
                  "customer, card and encrypted templates (`PaymentService.create_customer`) and "
                  "the index add (`PalmDirectory.add`). Durable = commit + add.", "",
                  *table(["database", "index samples", "enrollments", "commit p50 / p99 ms",
                          "index add p50 / p99 ms", "durable p50 / p99 ms",
                          "durable p50 vs SQLite", "duplicate check p50 / p99 ms"], "lrrrrrrr",
                         [[e.database, f"{e.samples:,}", f"{e.durable.count}",
                           f"{_f(e.commit.p50)} / {_f(e.commit.p99)}",
                           f"{_f(e.index_add.p50, 2)} / {_f(e.index_add.p99, 2)}",
                           f"{_f(e.durable.p50)} / {_f(e.durable.p99)}",
                           f"{e.durable.p50 / sqlite.durable.p50:.2f}×" if sqlite else "–",
                           f"{_f(e.duplicate_check.p50)} / {_f(e.duplicate_check.p99)}"]
                          for e in r.enrolls])]
    if r.loads or r.rebuilds:
        lines += ["", "## Start-up", ""]
    for load in r.loads:
        lines += [f"Saved index of {load.samples:,} samples: `PalmIndex.save` {load.save_s:.1f} s "
                  f"({load.disk_bytes / 1e9:.2f} GB on disk); `PalmIndex.load` "
                  f"{'with mmap ' if load.mmap else '(no mmap option in this tree) '}"
                  f"**{load.load_s:.1f} s**, adding {load.rss_delta / _MIB:,.0f} MiB resident "
                  f"after the first searches; first search {load.first_search_ms:.1f} ms, then "
                  f"p50 {_f(load.search.p50, 2)} / p99 {_f(load.search.p99, 2)} ms.", ""]
    if r.rebuilds:
        largest = max((x.samples for x in r.searches if x.error is None), default=0)
        product = [x for x in r.searches if x.samples == largest and x.structure != BASELINE
                   and x.error is None]
        build = product[0].train_s + product[0].build_s if product else None
        rows, estimates = [], []
        for b in r.rebuilds:
            per = b.decrypt_s / max(b.templates, 1)
            if build is not None and largest:
                estimates.append((b.database, per * largest + build))
            at = (f"{per * largest + build:.0f} s (decrypt {per * largest:.0f} + build "
                  f"{build:.0f})" if build is not None and largest else "–")
            rows.append([b.database, f"{b.templates:,}", f"{b.prepare_s:.1f}",
                         f"{b.decrypt_s:.2f}", f"{1e6 * per:.0f}", f"{b.index_s:.2f}", at])
        lines += ["Rebuilding from the database, what `palmpay serve` does at start: "
                  "`PaymentService.templates()` (read and decrypt every template) then "
                  "`PalmDirectory.load`. Measured at the size shown; the last column "
                  f"**extrapolates** to {largest:,} templates (decrypt per template × "
                  f"{largest:,}, plus the measured build of the {largest:,} index above).", "",
                  *table(["database", "templates", "enroll them s (not timed)", "decrypt s",
                          "µs / template", "index load s", f"estimate at {largest:,}"],
                         "lrrrrrr", rows)]
        saved = r.loads[0].load_s if r.loads else 0.0
        if saved > 0 and estimates:
            lines += ["", "Loading the saved index instead of rebuilding it: " + ", ".join(
                f"{est / saved:,.0f}× faster than the {db} rebuild estimate"
                for db, est in estimates) + "."]
    return lines


def _http(r: BenchResults, figures: dict[str, str]) -> list[str]:
    if not r.http:
        return []
    first = {(x.database, x.request): x for x in sorted(r.http, key=lambda x: -x.concurrency)}
    rows = []
    for x in r.http:
        one = first.get((x.database, x.request))
        base = next((y for y in r.http if y.database == x.database and y.request == x.request
                     and y.concurrency == 1), one)
        rows.append([x.database, x.request, f"{x.concurrency}", f"{x.requests}", f"{x.errors}",
                     f"{x.seconds:.1f}", f"{x.rps:.1f}",
                     f"{x.rps / base.rps:.2f}×" if base and base.rps else "–",
                     _f(x.timing.p50, 0), _f(x.timing.p99, 0), _f(x.server_cpu_ms, 1)])
    lines = ["", "## HTTP under load", "",
             "A real `palmpay serve` (uvicorn, one process) on loopback, the load from this "
             "process (asyncio + httpx, each level bounded in requests and seconds), on the same "
             "2 cores: the client's own CPU competes with the server. Pay = `POST /v1/payments` "
             "with 4 JPEG frames (640×480) of an enrolled synthetic hand; capture / refund of "
             "payments authorised beforehand. Server CPU = the server process's CPU time over "
             "the level ÷ requests. Ratios: requests/s against concurrency 1.", "",
             *table(["database", "request", "concurrency", "ok", "errors", "s", "req/s",
                     "vs c=1", "p50 ms", "p99 ms", "server CPU ms/req"], "llrrrrrrrrr", rows)]
    if "http" in figures:
        lines += ["", f"![http]({figures['http']})"]
    return lines


def _cpu(r: BenchResults) -> list[str]:
    if not r.cpu:
        return []
    lines = ["", "## CPU per pay-by-palm request", ""]
    for c in r.cpu:
        total = max(c.total_ms, 1e-9)
        rows = [[name, f"{ms:.1f}", f"{ms / total:.0%}"] for name, ms in c.stages.items()]
        lines += [f"In-process, {c.requests} requests of {c.frames} frames each, the pay route's "
                  f"steps (decode, `probe_live`, `match`, `authorize`); mean CPU ms per request "
                  f"by stage ({c.source}):", "",
                  *table(["stage", "CPU ms", "share"], "lrr",
                         [*rows, ["**total**", f"**{c.total_ms:.1f}**", "100%"]])]
        http = [x for x in r.http if x.request.startswith("pay") and x.concurrency == 1]
        if http:
            lines += ["", "Over HTTP the server spent " + ", ".join(
                f"{x.server_cpu_ms:.0f} ms ({x.database})" for x in http) + " of CPU per pay "
                "request at concurrency 1: the difference to the in-process total is the HTTP "
                "server, multipart parsing, authentication, rate-limit and audit bookkeeping."]
    return lines


def render(r: BenchResults, figures: dict[str, str]) -> str:
    """The whole page; ``figures`` maps plot names to paths relative to the page."""
    lines = [*_header(r), *_targets(r), *_gallery(r, figures), *_search(r, figures),
             *_startup(r), *_http(r, figures), *_cpu(r)]
    if r.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in r.notes]]
    return "\n".join(lines) + "\n"
