"""1:N search: one index structure at one gallery size, in a process of its own.

:func:`run_cell` is what the worker process runs (``python -m palmpay.bench.search ARGS_JSON``,
started by :func:`measure_cell`, so that resident memory is that of one index and a structure
that runs out of memory fails alone): it builds the index from the first ``n`` rows of the
gallery file (:mod:`palmpay.bench.galleryfile`) — a :class:`~palmpay.index.PalmIndex` with the
factory string of the structure, trained first when the structure needs it, or for the
baseline a bare ``faiss.IndexFlatIP`` over the same vectors (exact search, no re-rank) — then

- **build**: seconds to train and to add every identity; resident memory before and after
  (``VmRSS``, the gallery file's mapped pages released) and the index's own ``nbytes``;
- **query**: wall and CPU ms of single queries with one FAISS / BLAS thread (as one request
  runs them), half genuine probes (tongji session 2), half strangers (never-enrolled palms):
  ``PalmIndex.search`` (shortlist + code re-rank) or the baseline's FAISS search;
- **recall**: the share of genuine probes whose palm is in the shortlist of ``k`` samples
  (``PalmIndex.shortlist``; the baseline: its exact top ``k``), to be divided by the
  baseline's (a palm missing from the shortlist can never be matched);
- **top-1**: the share of the timed genuine queries whose best match is their palm.

With ``durable`` the worker then goes on with the full index to the enroll and load
benchmarks of :mod:`palmpay.bench.durable`.
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from palmpay.bench.harness import REPO, Timing, measure, rss_bytes
from palmpay.bench.results import EnrollRow, LoadRow, SearchRow, from_dict

__all__ = ["BASELINE", "build_index", "measure_cell", "parse_structure", "run_cell"]

log = logging.getLogger(__name__)

#: The structure name of the exact baseline (a bare FAISS ``IndexFlatIP``).
BASELINE = "exact FAISS Flat"
_ADD_CHUNK = 65_536
_TRAIN_ROWS = 200_000


def _groups(ident: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, stop, identity number) of each run of equal identity numbers."""
    cuts = np.flatnonzero(np.diff(ident)) + 1
    starts = np.concatenate([[0], cuts]).tolist()
    stops = np.concatenate([cuts, [len(ident)]]).tolist()
    return [(a, b, int(ident[a])) for a, b in zip(starts, stops, strict=True)]


def parse_structure(structure: str) -> tuple[str, dict[str, Any]]:
    """``"PCAR128,IVF1024,Flat nprobe=64"`` → the factory string and ``PalmIndex`` keyword
    options (integers) written after it."""
    factory, *rest = structure.split()
    options: dict[str, Any] = {}
    for item in rest:
        key, _, value = item.partition("=")
        options[key] = int(value)
    return factory, options


def build_index(gallery: Any, n: int, structure: str, embedder: Any) -> tuple[Any, float, float]:
    """The index of the first ``n`` rows; returns it, training and adding seconds."""
    import faiss

    from palmpay.index import DEFAULT_FACTORY, PalmIndex

    vectors, codes, ident = gallery.arrays(n)
    dim, code_bytes = vectors.shape[1], codes.shape[1]
    train_s = 0.0
    start = time.perf_counter()
    if structure == BASELINE:
        index: Any = faiss.IndexFlatIP(dim)
        for a in range(0, n, _ADD_CHUNK):
            index.add(np.ascontiguousarray(vectors[a:a + _ADD_CHUNK]))
        return index, 0.0, time.perf_counter() - start
    factory, options = parse_structure(structure)
    index = PalmIndex(dim, code_bytes, DEFAULT_FACTORY if factory == "default" else factory,
                      max_shift=embedder.max_shift, **options)
    # As the product does: a structure that needs training is trained once the gallery has
    # ``train_size`` samples; below that it answers exactly from its flat buffer.
    if (hasattr(index, "train") and not getattr(index, "is_trained", True)
            and n >= getattr(index, "train_size", 0)):
        rows = np.sort(np.random.default_rng(0).choice(n, min(n, _TRAIN_ROWS), replace=False))
        index.train(np.ascontiguousarray(vectors[rows]))
        train_s = time.perf_counter() - start
    for a in range(0, n, _ADD_CHUNK):
        v = np.ascontiguousarray(vectors[a:a + _ADD_CHUNK])
        c = np.ascontiguousarray(codes[a:a + _ADD_CHUNK])
        for s, e, who in _groups(np.asarray(ident[a:a + _ADD_CHUNK])):
            index.add(gallery.name(who), v[s:e], c[s:e])
    return index, train_s, time.perf_counter() - start - train_s


def run_cell(args: dict[str, Any], emit: Any = print) -> None:
    """Measure one structure at one size (module docstring); ``emit`` gets each result as
    one JSON line as soon as it is made (the search row, then the durable rows), so a later
    failure keeps the earlier rows."""
    import faiss

    from palmpay.bench.gallery import real_templates
    from palmpay.bench.galleryfile import GalleryFile
    from palmpay.config import Settings
    from palmpay.embed import PalmEmbedder

    faiss.omp_set_num_threads(1)
    settings = Settings(intra_op_threads=1)
    embedder = PalmEmbedder(settings)
    real = real_templates(Path(args["data"]), Path(args["cache"]), settings)
    gallery = GalleryFile.open(Path(args["gallery"]))
    n, structure, k = int(args["n"]), str(args["structure"]), int(args["k"])
    gc.collect()
    rss0 = rss_bytes()
    index, train_s, build_s = build_index(gallery, n, structure, embedder)
    gc.collect()
    rss_delta = rss_bytes() - rss0
    nbytes = getattr(index, "nbytes", None)
    rng = np.random.default_rng(int(args.get("seed", 0)))
    q = int(args["queries"])
    genuine = real.genuine.take(rng.choice(len(real.genuine), q // 2 + q % 2, replace=False))
    strangers = real.strangers.take(rng.choice(len(real.strangers), q // 2, replace=False))
    probes = [(genuine.vectors[i], genuine.codes[i], str(genuine.palms[i]))
              for i in range(len(genuine))]
    probes += [(strangers.vectors[i], strangers.codes[i], "") for i in range(len(strangers))]
    order = rng.permutation(len(probes))
    probes = [probes[i] for i in order]
    hits: list[bool] = []

    if structure == BASELINE:
        _, ident = gallery.arrays(n)[1:]
        ident = np.asarray(ident)

        def query(p: tuple[np.ndarray, np.ndarray, str]) -> None:
            index.search(p[0][None], k)
    else:
        def query(p: tuple[np.ndarray, np.ndarray, str]) -> None:
            matches = index.search(p[0], p[1], k)
            if p[2]:
                hits.append(bool(matches) and matches[0].identity == p[2])

    timing = measure(query, probes, len(probes), warmup=3, budget_s=float(args["budget_s"]))
    recall_n = min(int(args["recall_probes"]), len(real.genuine))
    picks = rng.choice(len(real.genuine), recall_n, replace=False)
    recall = real.genuine.take(np.sort(picks))
    if structure == BASELINE:
        faiss.omp_set_num_threads(int(args.get("batch_threads", 2)))
        _, ids = index.search(np.ascontiguousarray(recall.vectors), k)
        found = [recall.palms[i] in {gallery.name(int(ident[j])) for j in row if j >= 0}
                 for i, row in enumerate(ids)]
        faiss.omp_set_num_threads(1)
    else:
        found = [str(recall.palms[i]) in index.shortlist(recall.vectors[i], k)
                 for i in range(recall_n)]
    row = SearchRow(structure=structure, samples=n, identities=len(_groups(
        np.asarray(gallery.arrays(n)[2]))), composition=gallery.composition(n), train_s=train_s,
        build_s=build_s, rss_delta=rss_delta, nbytes=None if nbytes is None else int(nbytes),
        timing=timing, genuine_in_shortlist=float(np.mean(found)), recall_probes=recall_n,
        top1=None if structure == BASELINE else float(np.mean(hits)) if hits else None,
        trained=None if structure == BASELINE else bool(getattr(index, "is_trained", True)))
    emit(json.dumps({"search": _asdict(row)}), flush=True)
    if args.get("durable") and structure != BASELINE:
        from palmpay.bench import durable

        holder = [index]
        index = None  # the holder owns it: the load benchmark frees it before loading it back
        enrolls, load = durable.run_on_full_index(holder, real, args["durable"])
        emit(json.dumps({"enrolls": [_asdict(e) for e in enrolls],
                         "load": None if load is None else _asdict(load)}), flush=True)


def _asdict(obj: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(obj)


def _parsed(stdout: str | bytes | None) -> dict[str, Any]:
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout or ""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith("{"):
            out.update(json.loads(line))
    return out


def measure_cell(args: dict[str, Any], timeout_s: float
                 ) -> tuple[SearchRow, list[EnrollRow], LoadRow | None, str | None]:
    """Run :func:`run_cell` in a fresh process: the search row, the durable rows and what
    went wrong, if anything. A failure (out of memory, time-out, an exception) keeps the rows
    made before it; without a search row, the row has ``error`` set and no timing."""
    cmd = [sys.executable, "-m", "palmpay.bench.search", json.dumps(args)]
    log.info("search cell: %s at %d samples", args["structure"], args["n"])
    error = None
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
        out = _parsed(proc.stdout)
        if proc.returncode != 0:
            error = f"exit {proc.returncode}: " + (proc.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired as exc:
        out = _parsed(exc.stdout)
        error = f"did not finish in {timeout_s:.0f} s"
    if error:
        log.warning("search cell %s at %d: %s", args["structure"], args["n"], error)
    enrolls = [from_dict(EnrollRow, e) for e in out.get("enrolls", [])]
    load = from_dict(LoadRow, out["load"]) if out.get("load") else None
    if "search" in out:
        return from_dict(SearchRow, out["search"]), enrolls, load, error
    return (SearchRow(args["structure"], int(args["n"]), 0, {}, 0.0, 0.0, 0, None, Timing([]),
                      float("nan"), 0, None, error=error), enrolls, load, error)


def load_kwargs(load: Any) -> dict[str, Any]:
    """``{"mmap": True}`` when ``PalmIndex.load`` takes ``mmap`` (memory-mapped load)."""
    return {"mmap": True} if "mmap" in inspect.signature(load).parameters else {}


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_cell(json.loads(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
