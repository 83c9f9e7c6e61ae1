"""Scale-out simulation: K gallery shards, each its own process, behind one fan-out.

    nice -n 10 .venv/bin/python scripts/shard_sim.py --doc docs/scale_out.md \\
        --plot docs/scale_out.png                       # the numbers of docs/scale_out.md
    .venv/bin/python scripts/shard_sim.py --samples 3000 --probes 20 --seconds 1  # smoke run

One gallery of ``--samples`` synthetic templates (``--per-identity`` samples per customer, the
embedder's real sizes: ``PalmEmbedder().dim`` floats and ``.code_bytes`` code bytes) is held
either by one in-process :class:`~palmpay.index.PalmIndex` (the baseline: what one API process
does today, behind a lock like ``PalmDirectory``) or split over K shard processes
(``multiprocessing`` spawn, one pipe each), every shard a ``PalmIndex`` of its customers. The
router sends a probe to every shard, each answers its ``k`` nearest samples (cosine, customer)
and the code scores of those customers; the router keeps the global ``k`` nearest samples and
ranks their customers by code score: the same candidates and scores as one index holding
everything, so the merged top-1 must equal the baseline's for every probe (checked). The
open-set threshold is the one for the TOTAL number of samples searched.

Synthetic templates (for timing and exactness; they say nothing about accuracy): vectors from
a Gaussian fitted to compcode.onnx vectors (common mean, decaying spectrum), each sample a
second-session-like copy of its customer's vector; codes random bits, samples and probes with
8 % / 12 % of the customer's bits flipped. Strangers are customers never enrolled. Each
customer has pseudo-random last 4 phone digits: ``--layout`` shards by a hash of the customer
id or by those digits (bucket → shard), and narrowed searches (the customers sharing a probe's
digits) show how many shards each layout touches.

On a 2-core machine K processes share the same cores: the run shows overheads (IPC, merge) and
how memory splits, not speed-up. The speed-up on dedicated hosts is estimated from each shard's
own CPU time per search (the assumption: a shard on its own core runs as fast as its CPU time).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import json
import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Cluster", "GalleryModel", "Layout", "ShardUnavailable", "baseline_index", "main"]

log = logging.getLogger(__name__)

BUCKETS = 10_000  # last 4 phone digits
#: Synthetic vector model (from the earlier scripts/bench.py), fitted to compcode.onnx vectors of
#: the Tongji sessions: norm of the common mean, total variance, per-axis spectra (i + a) ** -b
#: of palms and of session-to-session noise.
MEAN_NORM, TOTAL_VARIANCE = 0.344, 0.882
GALLERY_SPECTRUM, NOISE_SPECTRUM = (20.0, 1.8), (300.0, 4.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _spectrum(dim: int, offset: float, power: float) -> np.ndarray:
    variance = (np.arange(1, dim + 1, dtype=np.float64) + offset) ** -power
    return np.sqrt(variance / variance.sum())


@functools.cache
def _model_axes(dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gallery model's common mean, per-axis scale of palms and of session noise."""
    mean = _unit(np.random.default_rng(12345).standard_normal(dim)) * MEAN_NORM
    scale = _spectrum(dim, *GALLERY_SPECTRUM) * np.sqrt(TOTAL_VARIANCE)
    return mean, scale.astype(np.float32), _spectrum(dim, *NOISE_SPECTRUM).astype(np.float32)


def _mix(x: int) -> int:
    """A 32-bit integer hash (murmur3 finaliser) of a customer number."""
    x &= 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
    x = ((x ^ (x >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def phone_last4(customer: int) -> int:
    """The customer's (synthetic) last 4 phone digits, 0..9999."""
    return _mix(customer ^ 0x5BD1E995) % BUCKETS


@dataclass(frozen=True)
class Layout:
    """Which shard holds a customer: ``by="hash"`` (of the id) or ``"last4"`` (bucket b → b % K,
    a table in production so that buckets can move)."""

    shards: int
    by: str = "hash"

    def shard_of(self, customer: int) -> int:
        if self.by == "last4":
            return phone_last4(customer) % self.shards
        return _mix(customer) % self.shards


@dataclass(frozen=True)
class GalleryModel:
    """Deterministic synthetic templates: customer ``c`` always gets the same samples."""

    dim: int
    code_bytes: int
    per_identity: int = 5
    seed: int = 11

    def _base(self, who: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, who, 0])
        mean, scale, _ = _model_axes(self.dim)
        vector = _unit(mean + rng.standard_normal(self.dim, np.float32) * scale)
        return vector, rng.integers(0, 256, self.code_bytes, dtype=np.uint8)

    def _copies(self, who: int, n: int, tag: int, flip: float) -> tuple[np.ndarray, np.ndarray]:
        """``n`` session copies: vectors at cosine 0.8-0.9 to the customer's, and about
        ``flip`` of the code bits flipped (drawn with replacement)."""
        vector, code = self._base(who)
        rng = np.random.default_rng([self.seed, who, tag])
        noise = rng.standard_normal((n, self.dim), np.float32) * _model_axes(self.dim)[2]
        noise = _unit(noise - (noise @ vector)[:, None] * vector)
        c = rng.uniform(0.8, 0.9, (n, 1)).astype(np.float32)
        bits = np.zeros((n, self.code_bytes * 8), np.uint8)
        where = rng.integers(0, bits.shape[1], (n, round(flip * bits.shape[1])))
        bits[np.arange(n)[:, None], where] = 1
        return _unit(c * vector + np.sqrt(1 - c * c) * noise), code ^ np.packbits(bits, axis=1)

    def samples(self, who: int) -> tuple[np.ndarray, np.ndarray]:
        return self._copies(who, self.per_identity, 1, 0.08)

    def probe(self, who: int, j: int = 0) -> tuple[np.ndarray, np.ndarray]:
        vectors, codes = self._copies(who, 1, 2 + j, 0.12)
        return vectors[0], codes[0]


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def _new_index(model: GalleryModel, factory: str | None, max_shift: int) -> Any:
    from palmpay.index import DEFAULT_FACTORY, PalmIndex
    return PalmIndex(model.dim, model.code_bytes, factory=factory or DEFAULT_FACTORY,
                     max_shift=max_shift)


def _rerank(index: Any, owned: dict[int, int], code: np.ndarray, customers: Sequence[int]
            ) -> dict[int, float]:
    """Each customer's best code score over its samples (enrolled as ``"<customer>:<s>"``)."""
    customers = [c for c in customers if c in owned]
    if not customers:
        return {}
    names = [f"{c}:{s}" for c in customers for s in range(owned[c])]
    scores = index.rerank(code, names)[0]
    bounds = np.cumsum([0] + [owned[c] for c in customers])
    return {c: float(scores[a:b].max()) for c, a, b in zip(customers, bounds[:-1], bounds[1:],
                                                           strict=True)}


def shard_main(conn: Any, spec: dict[str, Any]) -> None:
    """One shard process: build its part of the gallery, then answer requests until ``stop``.

    Samples are enrolled one name each (``"<customer>:<s>"``) so that the FAISS shortlist is
    per sample, as the router's exact merge needs; the re-rank still scores every sample of
    each shortlisted customer, as ``PalmIndex.search`` does."""
    import faiss

    import palmpay.index  # noqa: F401  (imported before the empty-process RSS is taken)
    faiss.omp_set_num_threads(1)
    model, layout = GalleryModel(**spec["model"]), Layout(**spec["layout"])
    rss_empty, t0 = _rss(), time.perf_counter()
    index = _new_index(model, spec["factory"], spec["max_shift"])
    owned: dict[int, int] = {}
    for who in range(spec["customers"]):
        if layout.shard_of(who) == spec["shard"]:
            vectors, codes = model.samples(who)
            for s in range(len(vectors)):
                index.add(f"{who}:{s}", vectors[s:s + 1], codes[s:s + 1])
            owned[who] = len(vectors)
    conn.send(("ready", {"samples": len(index), "customers": len(owned),
                         "build_s": time.perf_counter() - t0, "rss_empty": rss_empty,
                         "nbytes": int(getattr(index, "nbytes", 0)),
                         "rss": _rss(), "pid": os.getpid()}))
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        w0, c0 = time.perf_counter(), time.thread_time()
        if msg[0] == "search":
            _, rid, vector, code, k = msg
            nearest = index.shortlist(vector, k)
            samples = [(cos, int(name.split(":")[0])) for name, cos in nearest.items()]
            payload: Any = (samples, _rerank(index, owned, code,
                                             list(dict.fromkeys(c for _, c in samples))))
        else:  # "within": a narrowed search over the given customers (those held here)
            _, rid, code, customers = msg
            payload = _rerank(index, owned, code, customers)
        conn.send((rid, payload, time.perf_counter() - w0, time.thread_time() - c0))


class ShardUnavailable(RuntimeError):
    """A shard did not answer: the search is refused, never answered from the other shards."""


@dataclass(frozen=True)
class Answer:
    """A merged search: best customer (None when nothing is enrolled), its code score, and
    every asked shard's wall and CPU seconds for this request."""

    customer: int | None
    score: float
    shards: tuple[int, ...]
    shard_wall: tuple[float, ...] = field(default=())
    shard_cpu: tuple[float, ...] = field(default=())


class Cluster:
    """K shard processes and the router in front of them (thread-safe: requests are matched
    to replies by id, so several threads may search at once)."""

    def __init__(self, layout: Layout, model: GalleryModel, customers: int,
                 factory: str | None = None, max_shift: int = 3, timeout_s: float = 60.0) -> None:
        self.layout, self.timeout_s = layout, timeout_s
        ctx = mp.get_context("spawn")
        self._ids = count()
        self._pending: dict[int, cf.Future[Any]] = {}
        self._locks = [threading.Lock() for _ in range(layout.shards)]
        self._down: set[int] = set()
        self._conns, self.procs = [], []
        for shard in range(layout.shards):
            ours, theirs = ctx.Pipe()
            spec = {"model": asdict(model), "layout": asdict(layout), "shard": shard,
                    "customers": customers, "factory": factory, "max_shift": max_shift}
            proc = ctx.Process(target=shard_main, args=(theirs, spec), daemon=True)
            proc.start()
            theirs.close()
            self._conns.append(ours)
            self.procs.append(proc)
        self.stats = [self._ready(conn) for conn in self._conns]
        for shard, conn in enumerate(self._conns):
            threading.Thread(target=self._read, args=(shard, conn), daemon=True).start()

    def _ready(self, conn: Any) -> dict[str, Any]:
        if not conn.poll(3600):
            raise ShardUnavailable("a shard did not finish building")
        tag, stats = conn.recv()
        return dict(stats)

    def _read(self, shard: int, conn: Any) -> None:
        while True:
            try:
                rid, payload, wall, cpu = conn.recv()
            except (EOFError, OSError):
                self._down.add(shard)
                for future in list(self._pending.values()):
                    if not future.done():
                        future.set_exception(ShardUnavailable(f"shard {shard} is down"))
                return
            waiting = self._pending.pop(rid, None)
            if waiting is not None and not waiting.done():
                waiting.set_result((payload, wall, cpu))

    def _ask(self, shards: Sequence[int], message: Callable[[int], tuple[Any, ...]]
             ) -> list[tuple[Any, float, float]]:
        """Send one request to every shard in ``shards`` and wait for all of them."""
        futures, rids = [], []
        for shard in shards:
            if shard in self._down:
                raise ShardUnavailable(f"shard {shard} is down: refusing a partial search")
            rid = next(self._ids)
            rids.append(rid)
            future: cf.Future[Any] = cf.Future()
            self._pending[rid] = future
            try:
                with self._locks[shard]:
                    self._conns[shard].send(message(rid))
            except (BrokenPipeError, OSError) as err:
                self._down.add(shard)
                raise ShardUnavailable(f"shard {shard} is down: refusing a partial search"
                                       ) from err
            futures.append(future)
        try:
            return [f.result(timeout=self.timeout_s) for f in futures]
        except cf.TimeoutError as err:
            raise ShardUnavailable(f"a shard did not answer in {self.timeout_s} s") from err
        finally:
            for rid in rids:
                self._pending.pop(rid, None)

    def search(self, vector: np.ndarray, code: np.ndarray, k: int) -> Answer:
        """Fan one probe out to every shard; exact merge (see the module docstring)."""
        shards = tuple(range(self.layout.shards))
        replies = self._ask(shards, lambda rid: ("search", rid, vector, code, k))
        samples = sorted((s for (found, _), _, _ in replies for s in found), key=lambda s: -s[0])
        scores: dict[int, float] = {}
        for (_, shard_scores), _, _ in replies:
            scores.update(shard_scores)
        nearest = list(dict.fromkeys(c for _, c in samples[:k]))  # FAISS order, as PalmIndex
        ranked = sorted(nearest, key=scores.__getitem__, reverse=True)
        return Answer(ranked[0] if ranked else None, scores[ranked[0]] if ranked else 0.0,
                      shards, tuple(r[1] for r in replies), tuple(r[2] for r in replies))

    def search_one(self, shard: int, vector: np.ndarray, code: np.ndarray, k: int) -> float:
        """One shard's CPU seconds for a search (its answer is not merged: for timing)."""
        return float(self._ask((shard,), lambda rid: ("search", rid, vector, code, k))[0][2])

    def within(self, code: np.ndarray, customers: Sequence[int]) -> Answer:
        """A narrowed search: only the shards holding ``customers`` are asked."""
        shards = tuple(sorted({self.layout.shard_of(c) for c in customers}))
        replies = self._ask(shards, lambda rid: ("within", rid, code, list(customers)))
        scores = {c: s for reply in replies for c, s in reply[0].items()}
        best = min(scores, key=lambda c: (-scores[c], str(c))) if scores else None
        return Answer(best, scores[best] if best is not None else 0.0, shards,
                      tuple(r[1] for r in replies), tuple(r[2] for r in replies))

    def close(self) -> None:
        for shard, conn in enumerate(self._conns):
            if shard not in self._down:
                try:
                    with self._locks[shard]:
                        conn.send(("stop",))
                except OSError:
                    pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def baseline_index(model: GalleryModel, customers: int, factory: str | None, max_shift: int
                   ) -> Any:
    """One index holding every customer (identity = ``str(customer)``), as one API process."""
    index = _new_index(model, factory, max_shift)
    for who in range(customers):
        index.add(str(who), *model.samples(who))
    return index


def baseline_within(index: Any, code: np.ndarray, customers: Sequence[int]
                    ) -> tuple[int, float]:
    """The in-process narrowed search (as ``Recognizer.identify(within=...)``: ties → the
    identity that sorts first)."""
    names = sorted(str(c) for c in customers)
    scores = index.rerank(code, names)[0]
    best = int(np.argmax(scores))
    return int(names[best]), float(scores[best])


def _quantiles(x: Sequence[float]) -> dict[str, float]:
    a = np.asarray(x, np.float64) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": len(a)}


def load(fn: Callable[[int], object], n_probes: int, concurrency: int, seconds: float
         ) -> dict[str, float]:
    """``concurrency`` threads calling ``fn(probe number)`` for ``seconds``: rate and latency."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            fn(i % n_probes)
            with lock:
                latencies.append(time.perf_counter() - t0)
            i += concurrency

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"concurrency": concurrency, "per_s": len(latencies) / (time.perf_counter() - t0),
            **_quantiles(latencies)}


def _fan_out(cluster: Cluster, probes: Sequence[tuple[Any, ...]], k: int, i: int) -> Answer:
    return cluster.search(probes[i][1], probes[i][2], k)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole measurement (see the module docstring); returns the results as plain data."""
    import faiss

    from palmpay.embed import PalmEmbedder
    faiss.omp_set_num_threads(1)
    embedder = PalmEmbedder()
    model = GalleryModel(embedder.dim, embedder.code_bytes, args.per_identity)
    customers = args.samples // args.per_identity
    rng = np.random.default_rng(7)
    genuine = rng.choice(customers, args.probes // 2, replace=False).tolist()
    probes = ([(c, *model.probe(c)) for c in genuine]
              + [(None, *model.probe(customers + j)) for j in range(args.probes - len(genuine))])
    out: dict[str, Any] = {"args": vars(args), "customers": customers, "dim": model.dim,
                           "code_bytes": model.code_bytes, "cores": os.cpu_count()}
    rss0, t0 = _rss(), time.perf_counter()
    base = baseline_index(model, customers, args.factory, embedder.max_shift)
    out["baseline"] = {"build_s": time.perf_counter() - t0, "rss_added": _rss() - rss0,
                       "nbytes": int(getattr(base, "nbytes", 0)),
                       "samples": len(base), "factory": base.factory}
    truth, walls, cpus = [], [], []
    for _, vector, code in probes:
        t1, c1 = time.perf_counter(), time.thread_time()
        top = base.search(vector, code, args.k)[0]
        walls.append(time.perf_counter() - t1)
        cpus.append(time.thread_time() - c1)
        truth.append((int(top.identity), top.score))
    out["baseline"]["latency"] = _quantiles(walls)
    out["baseline"]["cpu"] = _quantiles(cpus)
    out["baseline"]["genuine_top1"] = sum(t[0] == c for (c, _, _), t in zip(probes, truth,
                                                                            strict=True) if c)
    lock = threading.Lock()

    def base_search(i: int) -> None:
        with lock:  # PalmDirectory serialises searches behind one lock
            base.search(probes[i][1], probes[i][2], args.k)

    out["baseline"]["load"] = [load(base_search, len(probes), c, args.seconds)
                               for c in args.concurrency]
    buckets: dict[int, list[int]] = {}
    for who in range(customers):
        buckets.setdefault(phone_last4(who), []).append(who)
    narrowed = [(c, buckets[phone_last4(c)]) for c in genuine[:args.narrowed]]
    out["narrow_truth"] = [baseline_within(base, probes[i][2], bucket)
                           for i, (_, bucket) in enumerate(narrowed)]
    out["open_set"] = _open_set(embedder, args, customers * args.per_identity)
    out["runs"] = []
    layouts = [Layout(k, "hash") for k in args.shards] + [Layout(max(args.shards), "last4")]
    for layout in layouts:
        log.info("starting %d shards by %s", layout.shards, layout.by)
        cluster = Cluster(layout, model, customers, args.factory, embedder.max_shift)
        result: dict[str, Any] = {"shards": layout.shards, "by": layout.by,
                                  "stats": cluster.stats}
        try:
            if layout.by == "hash":
                answers, walls = [], []
                for _, vector, code in probes:
                    t1 = time.perf_counter()
                    answers.append(cluster.search(vector, code, args.k))
                    walls.append(time.perf_counter() - t1)
                result["latency"] = _quantiles(walls)
                result["exact"] = sum(a.customer == t[0] and a.score == t[1]
                                      for a, t in zip(answers, truth, strict=True))
                result["shard_wall_max"] = [max(a.shard_wall) for a in answers]
                result["shard_cpu_max"] = [max(a.shard_cpu) for a in answers]
                result["shard_cpu"] = [x for a in answers for x in a.shard_cpu]
                # Shard 0 alone (the others idle): its cost at this size without competing
                # for cores or memory bandwidth, for the cost model.
                result["solo_cpu"] = [cluster.search_one(0, v, c, args.k)
                                      for _, v, c in probes[:args.solo]]
                result["wall"] = walls
                result["load"] = [load(functools.partial(_fan_out, cluster, probes, args.k),
                                       len(probes), c, args.seconds) for c in args.concurrency]
                threshold = out["open_set"]["threshold_total"]
                result["matched"] = {
                    "genuine": sum(a.score >= threshold for a, p in zip(answers, probes,
                                                                        strict=True) if p[0]),
                    "strangers": sum(a.score >= threshold for a, p in zip(answers, probes,
                                                                          strict=True)
                                     if p[0] is None)}
            if layout.shards == 1:  # the re-rank's cost per code, for the projection
                many = list(range(min(customers, args.rerank_customers)))
                cpu = [cluster.within(probes[i][2], many).shard_cpu[0] for i in range(5)]
                result["per_code_us"] = float(np.median(cpu)) / (len(many) * args.per_identity
                                                                 ) * 1e6
            answers, walls = [], []
            for i, (_, bucket) in enumerate(narrowed):
                t1 = time.perf_counter()
                answers.append(cluster.within(probes[i][2], bucket))
                walls.append(time.perf_counter() - t1)
            result["narrowed"] = {
                "latency": _quantiles(walls), "bucket_mean": float(np.mean(
                    [len(b) for _, b in narrowed])),
                "touched_mean": float(np.mean([len(a.shards) for a in answers])),
                "touched_max": max(len(a.shards) for a in answers),
                "exact": sum((a.customer, a.score) == tuple(t)
                             for a, t in zip(answers, out["narrow_truth"], strict=True)),
                "n": len(answers)}
        finally:
            cluster.close()
        out["runs"].append(result)
    return out


def _open_set(embedder: Any, args: argparse.Namespace, n: int) -> dict[str, Any]:
    """The operating point as :class:`~palmpay.recognizer.Recognizer` builds it (the model's
    ``open_set`` calibration, the settings' target FPIR and FNIR ceiling): the threshold for
    the total ``n`` searched, what per-shard thresholds would do, and the projection."""
    from palmpay.config import Settings
    from palmpay.decision import OperatingPoint
    s = Settings()
    point = OperatingPoint.from_calibration(embedder.meta["open_set"], s.target_fpir,
                                            s.max_fnir, s.n_safe)
    per_shard = []
    for k in sorted({*args.shards, 16, 100}):
        t = point.threshold(max(n // k, 1))
        per_shard.append({"shards": k, "threshold": t, "fpir_total": point.fpir(t, n)})
    total = int(args.palms * args.per_identity)
    bucket = total // BUCKETS
    return {"target_fpir": s.target_fpir, "max_fnir": s.max_fnir, "n_safe": point.n_safe,
            "frames": s.presentation_frames, "threshold_total": point.threshold(n),
            "per_shard": per_shard, "projected_samples": total, "bucket_samples": bucket,
            "threshold_projected": point.threshold(total),
            "fnir_projected": point.fnir(point.threshold(total)),
            "threshold_bucket": point.threshold(bucket),
            "fnir_bucket": point.fnir(point.threshold(bucket)),
            "fnir_n_safe": point.fnir(point.threshold(point.n_safe))}


BEGIN, END = "<!-- shard_sim:begin -->", "<!-- shard_sim:end -->"


def _ms(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def derive(out: dict[str, Any]) -> dict[str, Any]:
    """Per-configuration figures the report and the plot share (all from ``out``)."""
    base, rows = out["baseline"], []
    for r in (r for r in out["runs"] if r["by"] == "hash"):
        wall, swall = np.asarray(r["wall"]), np.asarray(r["shard_wall_max"])
        overhead = wall - swall
        dedicated = np.asarray(r["shard_cpu_max"]) + overhead
        index_bytes = [st["rss"] - st["rss_empty"] for st in r["stats"]]
        rows.append({
            "shards": r["shards"], "latency": r["latency"], "exact": r["exact"],
            "ratio": r["latency"]["p50_ms"] / base["latency"]["p50_ms"],
            "cpu_p50": float(np.median(r["shard_cpu_max"])) * 1e3,
            "overhead_p50": float(np.median(overhead)) * 1e3,
            "dedicated_p50": float(np.percentile(dedicated, 50)) * 1e3,
            "dedicated_p99": float(np.percentile(dedicated, 99)) * 1e3,
            "per_shard_samples": float(np.mean([st["samples"] for st in r["stats"]])),
            "shard_cpu_median": float(np.median(r["solo_cpu"])) * 1e3,
            "rss_max": max(st["rss"] for st in r["stats"]),
            "rss_total": sum(st["rss"] for st in r["stats"]),
            "index_max": max(index_bytes),
            "bytes_per_sample": sum(index_bytes) / sum(st["samples"] for st in r["stats"]),
            "nbytes_per_sample": sum(st.get("nbytes", 0) for st in r["stats"])
            / sum(st["samples"] for st in r["stats"]),
            "build_s": max(st["build_s"] for st in r["stats"]), "load": r["load"],
            "matched": r["matched"], "per_code_us": r.get("per_code_us")})
    n = np.asarray([r["per_shard_samples"] for r in rows])
    cpu = np.asarray([r["shard_cpu_median"] for r in rows])
    slope, intercept = np.polyfit(n, cpu, 1) if len(rows) > 1 else (cpu[0] / n[0], 0.0)
    # Every shard's CPU time per search, over its run's median: the shape of one shard's
    # service time. The slowest of K independent shards is below t with probability F(t)^K,
    # so its p99 is one shard's 0.99^(1/K) quantile.
    shape = np.concatenate([np.asarray(r["shard_cpu"]) / np.median(r["shard_cpu"])
                            for r in out["runs"] if r["by"] == "hash"])
    tail = {k: float(np.quantile(shape, 0.99 ** (1 / k))) for k in (1, 4, 16, 64)}
    resolved = [k for k in tail if len(shape) * (1 - 0.99 ** (1 / k)) >= 1]
    return {"rows": rows, "slope_ms": float(slope), "intercept_ms": float(intercept),
            "tail": tail, "tail_n": len(shape), "tail_resolved": resolved}


def render(out: dict[str, Any]) -> str:
    """The generated block of docs/scale_out.md (Markdown)."""
    d, base, o, a = derive(out), out["baseline"], out["open_set"], out["args"]
    rows, p = d["rows"], len(out["runs"][0]["wall"])
    lines = [BEGIN, "", f"Generated by `nice -n 10 .venv/bin/python {out['command']}` on "
             f"{time.strftime('%Y-%m-%d')}, {out['cores']} cores, FAISS `{base['factory']}`, "
             f"one FAISS thread per process. Gallery: {base['samples']:,} synthetic samples "
             f"({out['customers']:,} customers × {a['per_identity']}), {out['dim']}-d vectors, "
             f"{out['code_bytes']}-byte codes; shortlist k = {a['k']}; {p} probes, half genuine "
             "(second-session copies of enrolled customers), half strangers.", "",
             "**Latency, one probe at a time** (ms; p50/p99 are wall-clock on the shared "
             "cores; *router overhead* = request − slowest shard's own wall time: pickling, "
             "pipes, waiting for a core, merge; *dedicated cores* = slowest shard's CPU time + "
             "router overhead, per request (one process: its CPU time): the estimate for "
             "shards that do not share cores; *speed-up* = one process's CPU p50 over that)", "",
             "| configuration | p50 | p99 | p50 vs one process | CPU p50 (slowest shard) | "
             "router overhead p50 | dedicated cores p50 / p99 | speed-up, dedicated cores |",
             "|---|---|---|---|---|---|---|---|",
             f"| one process, in-process index | {_ms(base['latency']['p50_ms'])} | "
             f"{_ms(base['latency']['p99_ms'])} | 1.00 | {_ms(base['cpu']['p50_ms'])} | – | "
             f"{_ms(base['cpu']['p50_ms'])} / {_ms(base['cpu']['p99_ms'])} | 1.00 |"]
    for r in rows:
        lines.append(f"| {r['shards']} shard process{'es' if r['shards'] > 1 else ''} | "
                     f"{_ms(r['latency']['p50_ms'])} | {_ms(r['latency']['p99_ms'])} | "
                     f"{r['ratio']:.2f} | {_ms(r['cpu_p50'])} | {_ms(r['overhead_p50'])} | "
                     f"{_ms(r['dedicated_p50'])} / {_ms(r['dedicated_p99'])} | "
                     f"{base['cpu']['p50_ms'] / r['dedicated_p50']:.2f} |")
    lines += ["", "**Throughput** (threads sending probes for "
              f"{a['seconds']:g} s; the in-process index is searched behind one lock, as "
              "`PalmDirectory` does)", "",
              "| configuration | concurrency | searches/s | p50 ms | p99 ms | "
              "rate vs one process |",
              "|---|---|---|---|---|---|"]
    for name, loads in [("one process", base["load"])] + [
            (f"{r['shards']} shard{'s' if r['shards'] > 1 else ''}", r["load"]) for r in rows]:
        for ld, ref in zip(loads, base["load"], strict=True):
            lines.append(f"| {name} | {ld['concurrency']} | {ld['per_s']:.1f} | "
                         f"{_ms(ld['p50_ms'])} | {_ms(ld['p99_ms'])} | "
                         f"{ld['per_s'] / ref['per_s']:.2f} |")
    mb = 2 ** 20
    lines += ["", "**Memory** (resident set; *index* = a shard's RSS after building minus "
              "the same process before, with palmpay, numpy and FAISS imported)", "",
              "| configuration | samples per shard | RSS per shard (max) | index per shard "
              "(max) | index bytes per sample | `PalmIndex.nbytes` per sample | RSS of all "
              "shards | build s (slowest) |",
              "|---|---|---|---|---|---|---|---|",
              f"| one process, in-process | {base['samples']:,} | – | "
              f"{base['rss_added'] / mb:,.0f} MB | {base['rss_added'] / base['samples']:,.0f} "
              f"| {base.get('nbytes', 0) / base['samples']:,.0f} | – | {base['build_s']:.1f} |"]
    lines += [f"| {r['shards']} shard{'s' if r['shards'] > 1 else ''} | "
              f"{r['per_shard_samples']:,.0f} | {r['rss_max'] / mb:,.0f}"
              f" MB | {r['index_max'] / mb:,.0f} MB | {r['bytes_per_sample']:,.0f} | "
              f"{r['nbytes_per_sample']:,.0f} | {r['rss_total'] / mb:,.0f} MB | "
              f"{r['build_s']:.1f} |" for r in rows]
    lines += ["", "**Exactness**: the merged top-1 (customer and code score) equals the "
              "one-process top-1 for " + ", ".join(
                  f"{r['exact']}/{p} probes at {r['shards']} shard(s)" for r in rows)
              + f". At the threshold for the total {base['samples']:,} samples "
              f"({o['threshold_total']:.4f}) the merged search matches "
              + ", ".join(f"{r['matched']['genuine']}/{p // 2} genuine and "
                          f"{r['matched']['strangers']}/{p - p // 2} strangers "
                          f"({r['shards']} shard(s))" for r in rows)
              + f"; one process's top-1 is the right customer for {base['genuine_top1']}/"
              f"{p // 2} genuine probes.", "",
              "**Narrowed searches** (the customers sharing a genuine probe's last 4 phone "
              "digits; the router asks only the shards that hold them)", "",
              "| layout | shards | customers per bucket (mean) | shards touched (mean / max) | "
              "p50 ms | merged = one process |", "|---|---|---|---|---|---|"]
    for r in out["runs"]:
        nr = r["narrowed"]
        by = "by hash of the customer id" if r["by"] == "hash" else "by last 4 digits"
        lines.append(f"| {by} | {r['shards']} | {nr['bucket_mean']:.1f} | "
                     f"{nr['touched_mean']:.2f} / "
                     f"{nr['touched_max']} | {_ms(nr['latency']['p50_ms'])} | "
                     f"{nr['exact']}/{nr['n']} |")
    lines += ["", f"**Open-set threshold** (`OperatingPoint` from `models/compcode.json`, target "
              f"FPIR {o['target_fpir']:g}): the threshold for all {base['samples']:,} samples is "
              f"{o['threshold_total']:.4f}. Had each shard used the threshold for its own share, "
              "the FPIR of the whole search would be:", "",
              "| shards | per-shard threshold | FPIR over the whole gallery |", "|---|---|---|"]
    lines += [f"| {s['shards']} | {s['threshold']:.4f} | {s['fpir_total']:.2e} |"
              for s in o["per_shard"]]
    code_us = rows[0]["per_code_us"]
    lines += ["", "**Per-shard cost model** (median CPU per search of one shard searched "
              f"alone, {len(out['runs'][0]['solo_cpu'])} probes per run, against samples per "
              f"shard, least squares over the runs: "
              + ", ".join(f"{_ms(r['shard_cpu_median'])} ms at {r['per_shard_samples']:,.0f}"
                          for r in rows) + f"): {d['intercept_ms']:.2f} ms + "
              f"{d['slope_ms'] * 1e6:.0f} ns × samples; the re-rank scores one code in "
              f"{code_us:.1f} µs (a narrowed search over {a['rerank_customers']} customers). "
              "Fan-out tail: the p99 of the slowest of K shards is one shard's 0.99^(1/K) "
              f"quantile; over the median, from {d['tail_n']:,} shard service times (each over "
              "its run's median): " + ", ".join(
                  f"K = {k}: {v:.2f}" + ("" if k in d["tail_resolved"] else " (beyond the "
                                          "data: at least)") for k, v in d["tail"].items())
              + ".", ""]
    lines += _projection(out, d) + ["", END]
    return "\n".join(lines)


def _projection(out: dict[str, Any], d: dict[str, Any]) -> list[str]:
    """100 M palms: stated arithmetic on the measured bytes per sample and costs."""
    o, a, r1 = out["open_set"], out["args"], d["rows"][0]
    total, bucket = o["projected_samples"], o["bucket_samples"]
    usable = 0.75 * a["host_gb"] * 2 ** 30
    hosts = int(np.ceil(total * r1["bytes_per_sample"] / usable))
    hosts_1k = int(np.ceil(total * 1024 / usable))
    full_cpu_s = (hosts * d["intercept_ms"] + d["slope_ms"] * total) / 1e3
    frame_ms = bucket * r1["per_code_us"] / 1e3
    return [f"**Projection to {a['palms']:,.0f} palms** × {a['per_identity']} samples = "
            f"{total:,} samples (arithmetic on the numbers above; hosts with "
            f"{a['host_gb']:g} GB, 75 % of it for the index):", "",
            f"- memory: {r1['bytes_per_sample']:,.0f} B/sample (1-shard run) → "
            f"{total * r1['bytes_per_sample'] / 2 ** 40:,.1f} TiB, {hosts:,} hosts; at the "
            f"issue's target of 1 GB per 1 M samples (1 KiB/sample): {hosts_1k:,} hosts.",
            f"- one un-narrowed search of the whole gallery with this index: "
            f"{hosts:,} × {d['intercept_ms']:.2f} ms + {d['slope_ms'] * 1e6:.0f} ns × {total:,}"
            f" = {full_cpu_s:,.1f} CPU-s per frame, spread over every host.",
            f"- open set: the threshold for {total:,} samples is {o['threshold_projected']:.4f},"
            f" where {o['fnir_projected']:.1%} of genuine presentations fall below it (ceiling "
            f"{o['max_fnir']:.0%}: N_safe = {o['n_safe']:,} samples, FNIR "
            f"{o['fnir_n_safe']:.1%}), so every payment must be narrowed.",
            f"- narrowed by the last 4 digits: {bucket:,} samples per bucket, threshold "
            f"{o['threshold_bucket']:.4f} (FNIR {o['fnir_bucket']:.2%}); scoring every code of "
            f"the bucket as today (`identify(within=...)`) costs {bucket:,} × "
            f"{r1['per_code_us']:.1f} µs = {_ms(frame_ms)} ms CPU per frame, "
            f"{_ms(frame_ms * o['frames'])} ms per payment of {o['frames']} frames, on ONE "
            "shard when the gallery is sharded by those digits."]


def write_doc(path: Path, block: str) -> None:
    """Replace the generated block of ``path`` (between the shard_sim markers)."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} … {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + block + rest.split(END, 1)[1])


def write_plot(path: Path, out: dict[str, Any]) -> None:
    """Latency (measured and dedicated-core estimate), memory per shard, tail of max-of-K."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    d, base = derive(out), out["baseline"]
    rows = d["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    names = ["1 process"] + [f"{r['shards']} shard{'s' if r['shards'] > 1 else ''}"
                             for r in rows]
    x = np.arange(len(names))
    p50 = [base["latency"]["p50_ms"]] + [r["latency"]["p50_ms"] for r in rows]
    p99 = [base["latency"]["p99_ms"]] + [r["latency"]["p99_ms"] for r in rows]
    ded = [base["cpu"]["p50_ms"]] + [r["dedicated_p50"] for r in rows]
    axes[0].bar(x - 0.27, p50, 0.27, label="p50 (measured, shared cores)")
    axes[0].bar(x, p99, 0.27, label="p99 (measured)")
    axes[0].bar(x + 0.27, ded, 0.27, label="p50, dedicated cores (estimate)")
    axes[0].set_xticks(x, names)
    axes[0].set_ylabel("ms per search")
    axes[0].set_ylim(0, max(p99) * 1.45)
    axes[0].legend(fontsize=7, loc="upper left")
    axes[0].set_title(f"search, {base['samples']:,} samples")
    mb = 2 ** 20
    axes[1].bar(x, [base["rss_added"] / mb] + [r["index_max"] / mb for r in rows],
                color="tab:green")
    axes[1].set_xticks(x, names)
    axes[1].set_ylabel("MB (index, largest shard)")
    axes[1].set_title("memory per process")
    ks = list(d["tail"])
    axes[2].plot(ks, [d["tail"][k] for k in ks], "-", color="tab:blue")
    for k in ks:
        seen = k in d["tail_resolved"]
        axes[2].plot([k], [d["tail"][k]], "o", color="tab:blue",
                     fillstyle="full" if seen else "none",
                     label=None if seen else "beyond the data: at least")
    axes[2].legend(*[h[-1:] for h in axes[2].get_legend_handles_labels()], fontsize=7)
    axes[2].set_xscale("log", base=2)
    axes[2].set_xlabel("shards K")
    axes[2].set_ylabel("p99 of slowest shard / median")
    axes[2].set_title("fan-out tail: quantile 0.99^(1/K)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--per-identity", type=int, default=5)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--probes", type=int, default=200, help="half genuine, half strangers")
    parser.add_argument("--narrowed", type=int, default=50)
    parser.add_argument("--solo", type=int, default=50,
                        help="probes searched on one shard alone, for the cost model")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--k", type=int, default=50, help="shortlist size (Settings.shortlist_k)")
    parser.add_argument("--factory", default=None, help="FAISS factory (default: PalmIndex's)")
    parser.add_argument("--rerank-customers", type=int, default=400,
                        help="narrowed search size that measures the re-rank cost per code")
    parser.add_argument("--palms", type=float, default=1e8, help="projection: customers")
    parser.add_argument("--host-gb", type=float, default=256.0, help="projection: host RAM")
    parser.add_argument("--json", type=Path, default=Path(".work/shard_sim.json"))
    parser.add_argument("--doc", type=Path, help="rewrite the generated block of this file")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    # One OpenMP thread in every thread and shard process (FAISS is loaded after this): the
    # load generator's threads would otherwise each run FAISS with one thread per core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = "scripts/shard_sim.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = run(args)
    out["command"] = command
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, default=str))
    text = render(out)
    print(text)
    if args.doc:
        write_doc(args.doc, text)
    if args.plot:
        write_plot(args.plot, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
