"""``palmpay bench``: run every benchmark, write docs/benchmarks.md, its plots and its numbers.

:func:`main` parses the options, :func:`run` measures section by section (each one can be
chosen with ``--sections``) and :func:`write` renders the report
(:mod:`palmpay.bench.report`), the plots (:mod:`palmpay.bench.plots`) and ``results.json``
(which ``--from-json`` renders again without measuring). ``--quick`` runs everything at tiny
sizes (``tests/test_bench_smoke.py``): a check that the bench works, not numbers to quote.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from palmpay.bench.harness import REPO, Run, load_average, machine_facts, set_threads
from palmpay.bench.http import HttpPlan
from palmpay.bench.results import BenchResults, from_json, to_json

__all__ = ["FULL", "Plan", "QUICK", "SECTIONS", "main", "run", "write"]

log = logging.getLogger(__name__)

SECTIONS = ("search", "startup", "http", "cpu")


@dataclass(frozen=True)
class Plan:
    """How much ``palmpay bench`` measures."""

    sizes: tuple[int, ...]
    structures: tuple[str, ...]
    rendered_identities: int
    queries: int
    query_budget_s: float
    recall_probes: int
    enroll_count: int
    enroll_budget_s: float
    rebuild_templates: int
    http: HttpPlan
    cpu_customers: int
    cpu_requests: int
    distribution_probes: int
    distribution_group: int
    cell_timeout_s: float


#: FAISS factory strings measured through ``PalmIndex`` besides its default
#: (``palmpay.index.DEFAULT_FACTORY``, always measured, first), each optionally followed by
#: ``PalmIndex`` options (``"PCAR128,IVF1024,Flat nprobe=64"``); the exact FAISS baseline always
#: runs too. Two compressed candidates of scripts/index_choice.py: PCA to 128 dimensions, 1024
#: inverted lists, full 128-d vectors or 32-byte PQ codes.
STRUCTURES = ("default", "PCAR128,IVF1024,Flat", "PCAR128,IVF1024,PQ32")
FULL = Plan(sizes=(10_000, 100_000, 1_000_000), structures=STRUCTURES, rendered_identities=5000,
            queries=200, query_budget_s=30, recall_probes=1000, enroll_count=200,
            enroll_budget_s=45, rebuild_templates=10_000,
            http=HttpPlan(customers=8, concurrency=(1, 4, 16), pay_requests=240, pay_seconds=30,
                          money_requests=1000, money_seconds=15),
            cpu_customers=5, cpu_requests=30, distribution_probes=200, distribution_group=2000,
            cell_timeout_s=1500)
QUICK = Plan(sizes=(1_000, 3_000), structures=("default", "PCAR64,IVF16,Flat train_size=2000"),
             rendered_identities=60, queries=16,
             query_budget_s=5, recall_probes=40, enroll_count=10, enroll_budget_s=3,
             rebuild_templates=40,
             http=HttpPlan(customers=2, concurrency=(1, 2), pay_requests=4, pay_seconds=20,
                           money_requests=16, money_seconds=5),
             cpu_customers=2, cpu_requests=2, distribution_probes=20, distribution_group=100,
             cell_timeout_s=300)


def _tongji_fit(real: object) -> object:
    from palmpay.bench.gallery import TemplateSet

    g, extra = real.gallery, real.extra  # type: ignore[attr-defined]
    keep = np.char.startswith(g.palms, "tongji-")
    return TemplateSet(np.concatenate([g.vectors[keep], extra.vectors]),
                       np.concatenate([g.codes[keep], extra.codes]),
                       np.concatenate([g.palms[keep], extra.palms]))


def run(plan: Plan, args: argparse.Namespace, command: str) -> BenchResults:
    """Measure the sections of ``args.sections`` (module docstring)."""
    from palmpay.bench import cpu, durable, http, search
    from palmpay.bench.distractors import fit_vector_model, model_distractors, rendered_pool
    from palmpay.bench.gallery import TemplateSet, cache_dir, real_templates
    from palmpay.bench.galleryfile import build_gallery
    from palmpay.bench.realism import compare
    from palmpay.config import Settings
    from palmpay.embed import PalmEmbedder
    from palmpay.index import DEFAULT_FACTORY

    started = Run(command)
    settings = Settings(intra_op_threads=1)
    set_threads(1)
    sections = set(args.sections)
    cache = cache_dir(args.cache, settings)
    real = real_templates(args.data, cache, settings)
    embedder = PalmEmbedder(settings)
    pool = rendered_pool(plan.rendered_identities, cache, embedder)
    model = fit_vector_model(_tongji_fit(real))  # type: ignore[arg-type]
    mv, mc = model_distractors(model, pool, max(1, plan.distribution_group // 4), seed=999)
    distributions = compare(real.gallery, pool, TemplateSet(mv, mc, np.asarray(
        [f"model-{i // 4}" for i in range(len(mv))])), real.genuine, embedder.threshold,
        embedder.max_shift, plan.distribution_probes, plan.distribution_group)
    results = BenchResults(
        command=command, quick=args.quick, elapsed_s=0.0, load_start=started.load_at_start,
        load_end=0.0, machine=[list(f) for f in machine_facts()],
        settings={"shortlist_k": settings.shortlist_k, "default_factory": DEFAULT_FACTORY,
                  "threads": 1, "liveness": settings.liveness,
                  "threshold": embedder.threshold, "max_shift": embedder.max_shift,
                  "sections": sorted(sections)},
        gallery={"real_rows": len(real.gallery), "rendered_rows": len(pool),
                 "genuine_probes": len(real.genuine), "stranger_probes": len(real.strangers),
                 "failed_images": real.failed, "sizes": list(plan.sizes)},
        distributions=distributions)
    pg_url = args.pg_url
    # The product's structure first: the enroll and load benchmarks run on the first one.
    structures = tuple(dict.fromkeys([DEFAULT_FACTORY, *(
        DEFAULT_FACTORY if s == "default" else s for s in plan.structures)]))
    if "search" in sections or "startup" in sections:
        gallery = build_gallery(max(plan.sizes), real.gallery, pool, model, cache)
        largest = max(plan.sizes)
        for n in plan.sizes if "search" in sections else (largest,):
            for structure in (search.BASELINE, *structures):
                if "search" not in sections and structure == search.BASELINE:
                    continue
                durable_args = None
                if n == largest and structure == structures[0] and "startup" in sections:
                    durable_args = {"count": plan.enroll_count, "budget_s": plan.enroll_budget_s,
                                    "pg_url": pg_url}
                row, enrolls, load, error = search.measure_cell(
                    {"data": str(args.data), "cache": str(cache), "gallery": str(gallery.folder),
                     "n": n, "structure": structure, "k": settings.shortlist_k,
                     "queries": plan.queries, "budget_s": plan.query_budget_s,
                     "recall_probes": plan.recall_probes, "durable": durable_args},
                    plan.cell_timeout_s)
                results.searches.append(row)
                if error and row.error is None:
                    results.notes.append(f"{structure} at {n:,} samples: the search row was "
                                         f"measured, then the worker failed: {error}")
                results.enrolls.extend(enrolls)
                results.loads.extend([load] if load else [])
    logs = args.cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="palmpay-bench-") as tmp:
        for kind in ("SQLite", "PostgreSQL"):
            if "startup" in sections:
                with _guarded(results, f"start-up rebuild on {kind}"), durable.database_settings(
                        kind, Path(tmp) / "rebuild", pg_url, intra_op_threads=1) as s:
                    if s is not None:
                        results.rebuilds.append(durable.rebuild(kind, s, real,
                                                                plan.rebuild_templates))
            if "http" in sections:
                with _guarded(results, f"HTTP on {kind}"), durable.database_settings(
                        kind, Path(tmp) / f"http-{kind}", pg_url) as s:
                    if s is not None:
                        results.http.extend(http.http_rows(kind, s, plan.http,
                                                           logs / f"serve-{kind}.log"))
                    else:
                        results.notes.append(f"{kind}: not reachable, HTTP rows skipped")
        if "cpu" in sections:
            with _guarded(results, "CPU split"), durable.database_settings(
                    "SQLite", Path(tmp) / "cpu", pg_url, intra_op_threads=1) as s:
                results.cpu.append(cpu.cpu_split(s, plan.cpu_customers, plan.cpu_requests))
    return replace(results, elapsed_s=started.elapsed, load_end=load_average())


@contextlib.contextmanager
def _guarded(results: BenchResults, what: str) -> Iterator[None]:
    """Run a section; if it raises, note it in the report and go on with the next one."""
    try:
        yield
    except Exception as exc:  # one failed section must not lose the others
        log.exception("%s failed", what)
        results.notes.append(f"{what} failed: {type(exc).__name__}: {exc}")


def write(results: BenchResults, out: Path) -> None:
    """docs/benchmarks.md (``out``), its plots and results.json beside it in ``out``'s stem
    folder (docs/benchmarks/)."""
    from palmpay.bench import plots, report

    folder = out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    text = to_json(results)
    (folder / "results.json").write_text(text + "\n")
    results = from_json(text)  # the page is exactly what --from-json makes of the file
    figures = plots.all_plots(results, folder)
    rel = {name: str(path.relative_to(out.parent)) for name, path in figures.items()}
    out.write_text(report.render(results, rel))
    log.info("wrote %s, %s", out, ", ".join(str(p) for p in figures.values()))


def build_parser() -> argparse.ArgumentParser:
    from palmpay.bench.durable import PG_URL

    parser = argparse.ArgumentParser(
        prog="palmpay bench", description="Measure 1:N search, enrollment, start-up, HTTP load "
        "and CPU per payment; write docs/benchmarks.md with plots (docs/benchmarks/*.png).")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks that the bench works (numbers not to quote)")
    parser.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")),
                        help="gallery sizes, e.g. 10000,100000,1000000")
    parser.add_argument("--structures", type=lambda s: tuple(s.split(";")),
                        help="FAISS factory strings separated by ';' measured besides the "
                             "PalmIndex default, each optionally with PalmIndex options "
                             "('IVF1024,Flat nprobe=64'); the exact baseline always runs")
    parser.add_argument("--sections", type=lambda s: tuple(s.split(",")), default=SECTIONS,
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding tongji-dev/ and coep-dev/")
    parser.add_argument("--cache", type=Path, default=REPO / ".work" / "bench",
                        help="cache of embedded templates and galleries")
    parser.add_argument("--pg-url", default=PG_URL, help="PostgreSQL (a fresh schema is used)")
    parser.add_argument("--from-json", type=Path,
                        help="render the report from a results.json instead of measuring")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``palmpay bench`` (and ``python -m palmpay.bench``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("palmpay.bench").setLevel(logging.INFO)  # progress, whatever -v says
    if args.from_json:
        write(from_json(args.from_json.read_text()), args.out)
        return 0
    bad = set(args.sections) - set(SECTIONS)
    if bad:
        raise SystemExit(f"palmpay bench: unknown sections {sorted(bad)}; use {SECTIONS}")
    plan = QUICK if args.quick else FULL
    plan = replace(plan, sizes=args.sizes or plan.sizes,
                   structures=args.structures or plan.structures)
    if not (args.data / "tongji-dev").is_dir() or not (args.data / "coep-dev").is_dir():
        raise SystemExit(f"palmpay bench: {args.data} needs tongji-dev/ and coep-dev/")
    results = run(plan, args, shlex.join(["palmpay", "bench", *argv]))
    write(results, args.out)
    return 0
