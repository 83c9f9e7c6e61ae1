"""Which FAISS structure for :class:`palmpay.index.PalmIndex`: measured at 100 k and 1 M samples.

For each structure (one factory string, with its ``nprobe`` / ``efSearch``) at each gallery
size: train and build seconds, the index's own bytes (``PalmIndex.memory()``) and the process's
resident-memory growth (``VmRSS``), the query time p50/p99 on one thread
(``faiss.omp_set_num_threads(1)``) of ``PalmIndex.shortlist`` alone and of ``PalmIndex.search``
(shortlist + code re-rank), and genuine-in-shortlist: the share of real second-session probes
whose palm is among the identities of the ``k`` nearest samples, against exact search's share
on the same gallery. Memory-mapped load: the saved index loaded with ``mmap=True``, the codes'
mapped bytes against the bytes a search run actually touched.

The gallery: the 300 palms of ``tongji-dev`` (session 1, 5 samples each, through
``PalmEmbedder``: the 128×128 ROIs go straight to the embedder) plus synthetic distractors, 5
samples per distractor identity, drawn from a Gaussian fitted to the real vectors (mean and
full covariance of all 6,000 tongji templates, sampled, re-normalised). The probes: all 3,000
session-2 templates. Exact search's answer (the reference) is a brute-force matrix product.
Distractor codes are random bytes (the re-rank's cost does not depend on their content).

Everything expensive is cached under ``.work/index_choice/`` (templates, distractors as
float16, exact answers, one JSON per measurement); each run measures what is asked and
``--report`` writes docs/index_choice.md from every cached measurement::

    nice -n 10 .venv/bin/python scripts/index_choice.py --size 100000 --all
    nice -n 10 .venv/bin/python scripts/index_choice.py --size 1000000 --spec NAME ...
    .venv/bin/python scripts/index_choice.py --rerank
    .venv/bin/python scripts/index_choice.py --report
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from palmpay.capture import read_image  # noqa: E402
from palmpay.dataset import scan  # noqa: E402
from palmpay.embed import PalmEmbedder  # noqa: E402
from palmpay.index import PalmIndex, structure  # noqa: E402

CACHE = ROOT / ".work" / "index_choice"
DATA = ROOT.parent / "shared" / "data" / "tongji-dev"
DOC = ROOT / "docs" / "index_choice.md"
ENROLL, PER_ID, K, TIMED = 5, 5, 50, 300
#: Factory strings, each with the search parameter and values swept on one build. The IVF
#: structures have 1,024 lists: training 4,096 centroids took too long for this 2-core machine
#: (k-means cost grows with lists × training points). ``Refine(PCAR128,SQ8)`` re-scores the
#: candidates on 128-byte codes in the same PCA space (``…,Refine(SQ8)`` after a PCA would
#: refine on the raw 1,176-d vectors: 1.2 GB at 1 M). PCA layers are trained uncentred
#: (``palmpay.index.structure.train``).
SPECS: dict[str, tuple[str | None, list[int]]] = {  # factory: (parameter, values)
    "Flat": (None, [0]),
    "PCAR128,Flat": (None, [0]),
    "PCAR256,Flat": (None, [0]),
    "IVF256,Flat": ("nprobe", [8, 32]),
    "PCAR128,IVF1024,Flat": ("nprobe", [32, 64, 128]),
    "PCAR128,IVF1024,PQ32": ("nprobe", [32, 64, 128]),
    "OPQ32_128,IVF1024,PQ32": ("nprobe", [64, 128]),
    "PCAR128,PQ64x4fs,Refine(PCAR128,SQ8)": ("k_factor", [4, 8, 16]),
    "PCAR192,PQ64x4fs,Refine(PCAR192,SQ8)": ("k_factor", [4, 8, 16]),
    "PCAR256,PQ64x4fs,Refine(PCAR256,SQ8)": ("k_factor", [4, 8, 16]),
    "PCAR256,PQ128x4fs,Refine(PCAR256,SQ8)": ("k_factor", [4, 8]),
    "HNSW32": ("ef_search", [64, 128]),
    "PCAR128,HNSW32": ("ef_search", [128, 256]),
}
#: A spec name ``centred:FACTORY`` trains FACTORY's PCA as FAISS does (mean subtracted).
CENTRED = "centred:"
#: Training vectors per IVF list (FAISS warns under 39).
TRAIN_PER_LIST = 64


def templates(embedder: PalmEmbedder) -> dict[str, np.ndarray]:
    """Real templates of tongji-dev: vectors, codes, palm number and session of each, in
    :func:`palmpay.dataset.scan` order (by palm, then file name)."""
    path = CACHE / "templates.npz"
    if path.is_file():
        return dict(np.load(path))
    samples = [s for s in scan(DATA) if s.session in (1, 2)]
    palms = sorted({s.palm for s in samples})
    rois = [cv2.cvtColor(read_image(s.path), cv2.COLOR_BGR2GRAY) for s in samples]
    vectors, codes = embedder.embed_many(rois)
    out = {"vectors": vectors, "codes": codes,
           "palm": np.asarray([palms.index(s.palm) for s in samples], np.int32),
           "session": np.asarray([s.session for s in samples], np.int8)}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def gallery_parts(real: dict[str, np.ndarray]):
    """(enrolled vectors, codes, palm of each), (probe vectors, palm of each)."""
    first = real["session"] == 1  # tongji numbers files across palms: rank within the palm
    rank = np.zeros(len(first), np.int64)
    for palm in np.unique(real["palm"]).tolist():
        rows = np.flatnonzero(first & (real["palm"] == palm))
        rank[rows] = np.arange(len(rows))
    enrolled = first & (rank < ENROLL)
    probes = real["session"] == 2
    return ((real["vectors"][enrolled], real["codes"][enrolled], real["palm"][enrolled]),
            (real["vectors"][probes], real["codes"][probes], real["palm"][probes]))


def distractors(real: np.ndarray, n: int) -> np.ndarray:
    """``n`` synthetic vectors (float16 memory map): Gaussian fitted to ``real``, unit norm."""
    path = CACHE / f"distractors_{n}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    mean = real.mean(axis=0, dtype=np.float64)
    cov = np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1])
    factor = np.linalg.cholesky(cov).astype(np.float32)
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), "w+", np.float16,
                                    (n, real.shape[1]))
    rng = np.random.default_rng(2024)
    for a in range(0, n, 50_000):
        z = rng.standard_normal((min(n, a + 50_000) - a, real.shape[1]), np.float32)
        x = mean.astype(np.float32) + z @ factor.T
        out[a : a + len(z)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    del out
    path.with_suffix(".tmp.npy").rename(path)
    return np.load(path, mmap_mode="r")


def realism(real, synth) -> dict:
    """Cosines of the real probes: to their own palm's enrolled samples, to the other real
    palms' (impostors) and to 20,000 distractors."""
    (ev, _, ep), (pv, _, pp) = gallery_parts(real)
    real_scores = ev @ pv.T
    same = ep[:, None] == pp[None, :]
    genuine, impostor = real_scores[same], real_scores[~same]
    synthetic = np.asarray(synth[:20_000], np.float32) @ pv.T
    return {"name": "realism", "genuine_mean": float(genuine.mean()),
            "genuine_p5": float(np.percentile(genuine, 5)),
            "impostor_mean": float(impostor.mean()),
            "impostor_p999": float(np.percentile(impostor, 99.9)),
            "synthetic_mean": float(synthetic.mean()),
            "synthetic_p999": float(np.percentile(synthetic, 99.9))}


def gallery_chunks(real, synth: np.ndarray, size: int, chunk: int = 50_000):
    """The gallery in row order, as (vectors, identity index) chunks: real palms first."""
    (ev, _, ep), _ = gallery_parts(real)
    yield ev.astype(np.float32), ep.astype(np.int64)
    n_synth = size - len(ev)
    for a in range(0, n_synth, chunk):
        b = min(n_synth, a + chunk)
        yield (np.asarray(synth[a:b], np.float32),
               1000 + np.arange(a, b, dtype=np.int64) // PER_ID)


def exact(real, synth, size: int) -> np.ndarray:
    """Exact search: for every probe, whether its palm is among the identities of the ``K``
    nearest gallery samples (cached)."""
    path = CACHE / f"exact_{size}.npy"
    if path.is_file():
        return np.load(path)
    _, (pv, _, pp) = gallery_parts(real)
    best_s = np.full((len(pv), K), -np.inf, np.float32)
    best_o = np.zeros((len(pv), K), np.int64)
    for vectors, owners in gallery_chunks(real, synth, size):
        scores = pv @ vectors.T
        s = np.concatenate([best_s, scores], axis=1)
        o = np.concatenate([best_o, np.broadcast_to(owners, scores.shape)], axis=1)
        top = np.argpartition(-s, K - 1, axis=1)[:, :K]
        best_s, best_o = np.take_along_axis(s, top, 1), np.take_along_axis(o, top, 1)
    hit = (best_o == pp[:, None]).any(axis=1)
    np.save(path, hit)
    return hit


def rss() -> int:
    """Anonymous resident bytes (``RssAnon``: not the page cache of the mapped distractors)."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"RssAnon:\s+(\d+)", text).group(1)) * 1024  # type: ignore[union-attr]


def mapped_rss(path: Path) -> int:
    """Resident bytes of this process's maps of ``path``."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def measure(name: str, size: int, real, synth, embedder: PalmEmbedder) -> list[dict]:
    """Build ``SPECS[name]`` at ``size``; one result per swept search parameter value."""
    centred = name.startswith(CENTRED)
    factory = name.removeprefix(CENTRED)
    param, values = SPECS[factory]
    (ev, ec, ep), (pv, pc, pp) = gallery_parts(real)
    rng = np.random.default_rng(7)
    before = rss()
    index = PalmIndex(embedder.dim, embedder.code_bytes, factory, embedder.max_shift,
                      train_size=0)
    start = time.perf_counter()
    if centred:  # FAISS's own PCA training (mean subtracted), for comparison
        structure._train_pca_uncentred = lambda index, vectors: None
    if not index.is_trained:
        lists = int(m.group(1)) if (m := re.search(r"IVF(\d+)", factory)) else 512
        n_train = min(size - len(ev), max(TRAIN_PER_LIST * lists, 50_000))
        rows = np.sort(rng.choice(size - len(ev), n_train, replace=False))
        index.train(np.asarray(synth[rows], np.float32))
    train_s = time.perf_counter() - start
    faiss.omp_set_num_threads(1)  # enrollments add a few vectors: threads cost more than help
    start = time.perf_counter()
    for vectors, owners in gallery_chunks(real, synth, size):
        names = owners.tolist()
        for a in range(0, len(vectors), PER_ID):
            who = names[a]
            codes = ec[a : a + PER_ID] if who < 1000 else rng.integers(
                0, 256, (min(PER_ID, len(vectors) - a), embedder.code_bytes), np.uint8)
            index.add(f"id{who}", vectors[a : a + PER_ID], codes)
    build_s = time.perf_counter() - start
    grown = rss() - before
    memory = index.memory()
    palm_numbers = np.asarray([index._number.get(f"id{p}", -2) for p in range(300)])
    timed = rng.choice(len(pv), TIMED, replace=False)
    results = []
    for value in values:
        if param is not None:
            setattr(index, param, value)  # applied to the FAISS layers that have it
        # genuine-in-shortlist over every probe (batched FAISS search; shortlist's answer)
        faiss.omp_set_num_threads(2)
        _, rows = index._faiss.search(np.ascontiguousarray(pv), K)
        found = (index._owner.view[rows] == palm_numbers[pp][:, None]).any(axis=1)
        faiss.omp_set_num_threads(1)
        short, full = [], []
        for i in timed.tolist():
            t0 = time.perf_counter()
            index.shortlist(pv[i], K)
            t1 = time.perf_counter()
            index.search(pv[i], pc[i], K)
            short.append(t1 - t0)
            full.append(time.perf_counter() - t1)
        results.append({
            "name": name if param is None else f"{name} {param}={value}", "factory": factory,
            "centred": centred,
            "param": param, "value": value, "size": size, "train_s": train_s,
            "build_s": build_s, "rss_growth": grown, "codes_bytes": memory.codes,
            "faiss_bytes": memory.faiss, "tables_bytes": memory.tables,
            "genuine_in_shortlist": float(found.mean()), "shortlist_ms": _percentiles(short),
            "search_ms": _percentiles(full)})
    mapped = _mapped(index, pv, pc, timed)
    for result in results:
        result.update(mapped)
    return results


def _mapped(index: PalmIndex, pv, pc, timed) -> dict:
    """Save, load memory-mapped, search: load seconds, mapped and touched code bytes."""
    folder = Path(tempfile.mkdtemp(dir=CACHE))
    try:
        index.save(folder)
        before = rss()
        start = time.perf_counter()
        loaded = PalmIndex.load(folder, mmap=True)
        load_s = time.perf_counter() - start
        for i in timed.tolist():
            loaded.search(pv[i], pc[i], K)
        return {"load_s": load_s, "codes_mapped": loaded.memory().codes_mapped,
                "loaded_anon": rss() - before,
                "codes_touched": mapped_rss(folder / "codes.npy"),
                "faiss_touched": mapped_rss(folder / "index.faiss")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def flat_reference(size: int, real, synth) -> dict:
    """Exact FAISS ``IndexFlatIP`` at ``size`` filled in place (no growth copies): one-thread
    query time; its answers checked against the brute-force reference."""
    (ev, _, _), (pv, _, pp) = gallery_parts(real)
    flat = faiss.IndexFlatIP(real["vectors"].shape[1])
    flat.codes.resize(size * flat.d * 4)
    store = faiss.rev_swig_ptr(flat.codes.data(), size * flat.d * 4).view(np.float32)
    owner = np.empty(size, np.int64)
    row = 0
    for vectors, owners in gallery_chunks(real, synth, size):
        store[row * flat.d : (row + len(vectors)) * flat.d] = vectors.ravel()
        owner[row : row + len(vectors)] = owners
        row += len(vectors)
    flat.ntotal = size
    faiss.omp_set_num_threads(1)
    seconds = []
    for i in range(30):
        t0 = time.perf_counter()
        flat.search(pv[i : i + 1], K)
        seconds.append(time.perf_counter() - t0)
    faiss.omp_set_num_threads(2)
    _, rows = flat.search(pv[:200], K)
    agree = float(((owner[rows] == pp[:200, None]).any(axis=1) == exact(real, synth, size)[:200])
                  .mean())
    return {"name": "Flat (FAISS alone)", "size": size, "shortlist_ms": _percentiles(seconds),
            "faiss_bytes": size * flat.d * 4, "agrees_with_reference": agree}


def _mb(n: float | None) -> str:
    return "–" if n is None else f"{n / 1e6:,.0f}"


def _row(r: dict) -> str:
    ratio = (r["genuine_in_shortlist"] / r["exact_genuine_in_shortlist"]
             if "genuine_in_shortlist" in r else None)
    resident = (r["faiss_bytes"] + r["codes_bytes"] + r["tables_bytes"]
                if "codes_bytes" in r else None)
    fast_and_found = (ratio is not None and ratio >= 0.995 and "search_ms" in r
                      and r["search_ms"]["p99"] <= 5.0)
    ok = fast_and_found and resident is not None and resident <= 1e9
    cells = [
        f"`{r['name']}`", "–" if "train_s" not in r else f"{r['train_s']:.0f}",
        "–" if "build_s" not in r else f"{r['build_s']:.0f}", _mb(r.get("faiss_bytes")),
        _mb(r.get("codes_bytes")), _mb(resident), _mb(r.get("rss_growth")),
        f"{r['shortlist_ms']['p50']:.2f} / {r['shortlist_ms']['p99']:.2f}",
        "–" if "search_ms" not in r else
        f"{r['search_ms']['p50']:.2f} / {r['search_ms']['p99']:.2f}",
        "–" if ratio is None else f"{r['genuine_in_shortlist']:.4f}",
        "–" if ratio is None else f"{ratio:.4f}",
        "–" if "load_s" not in r else f"{r['load_s']:.2f}",
        "–" if "codes_touched" not in r else
        f"{_mb(r['codes_mapped'])} / {_mb(r['codes_touched'])} / {_mb(r.get('loaded_anon'))}",
        "**yes**" if ok else "speed, recall" if fast_and_found else "no",
    ]
    return "| " + " | ".join(cells) + " |"


def write_report(paths: list[Path]) -> None:
    """docs/index_choice.md from the cached measurements: one table per gallery size."""
    extra = ("rerank.json", "realism.json")
    results = [json.loads(p.read_text()) for p in paths if p.name not in extra]
    rerank = next((json.loads(p.read_text()) for p in paths if p.name == "rerank.json"), None)
    real = next(json.loads(p.read_text()) for p in paths if p.name == "realism.json")
    lines = [
        "# Which FAISS structure for the palm index",
        "",
        "Written by `scripts/index_choice.py` (its docstring: method, gallery, probes); the "
        "numbers below were measured with",
        "",
        "```",
        "nice -n 10 .venv/bin/python scripts/index_choice.py --size 100000 --all",
        "nice -n 10 .venv/bin/python scripts/index_choice.py --size 100000 --spec "
        "'centred:PCAR256,Flat' 'centred:PCAR128,Flat'",
        "nice -n 10 .venv/bin/python scripts/index_choice.py --size 1000000 --spec "
        "'PCAR128,PQ64x4fs,Refine(PCAR128,SQ8)' 'PCAR192,PQ64x4fs,Refine(PCAR192,SQ8)' "
        "'PCAR256,PQ64x4fs,Refine(PCAR256,SQ8)'",
        "nice -n 10 .venv/bin/python scripts/index_choice.py --size 1000000 --spec "
        "flat-reference 'PCAR128,Flat' 'PCAR256,Flat' 'PCAR128,IVF1024,PQ32' "
        "'PCAR128,IVF1024,Flat'",
        "nice -n 10 .venv/bin/python scripts/index_choice.py --size 1000000 --spec "
        "'PCAR128,HNSW32' 'OPQ32_128,IVF1024,PQ32' 'PCAR256,PQ128x4fs,Refine(PCAR256,SQ8)' "
        "'centred:PCAR256,Flat'",
        ".venv/bin/python scripts/index_choice.py --rerank",
        ".venv/bin/python scripts/index_choice.py --report",
        "```",
        "",
        "on the project's 2-core machine, shared with other work while it ran (timings are "
        "noisy; compare rows of one table). Columns: training and build seconds (build = "
        "every `PalmIndex.add`, one identity of 5 samples at a time, one FAISS thread); the "
        "index's own bytes (`PalmIndex.memory()`: FAISS structure, codes, and their sum with "
        "the identity tables, MB) and the process's `VmRSS` growth over the build (MB); one-"
        "thread query milliseconds p50 / p99 of `PalmIndex.shortlist` (FAISS, k = 50 samples) "
        "and of `PalmIndex.search` (shortlist + code re-rank of every sample of the "
        "shortlisted identities); genuine-in-shortlist: the share of the 3,000 real "
        "second-session probes whose palm is among the shortlisted identities, and its ratio "
        "to exact search's share on the same gallery (target ≥ 0.995); `PalmIndex.load(mmap="
        "True)` seconds, and after 300 searches of the loaded index: the codes' mapped MB, "
        "their pages in the process's RSS (page cache the kernel maps around each touched "
        "page: shared and reclaimable, not the index's own memory), and the anonymous memory "
        "the load and searches added (`RssAnon`). *Meets*: search p99 ≤ 5 ms, ratio ≥ 0.995 "
        "and index bytes ≤ 1 GB (codes counted whole, as if resident); *speed, recall*: the "
        "first two only.",
        "",
    ]
    for size in sorted({r["size"] for r in results}):
        rows = sorted((r for r in results if r["size"] == size),
                      key=lambda r: (r.get("factory", ""), r.get("centred", False),
                                     r.get("value") or 0))
        exact_share = next((r["exact_genuine_in_shortlist"] for r in rows), None)
        lines += [
            f"## {size:,} samples",
            "",
            f"Exact search (brute force) finds the genuine palm in the shortlist for "
            f"{exact_share:.4f} of the probes.",
            "",
            "| structure | train s | build s | FAISS MB | codes MB | index MB | RSS growth MB "
            "| shortlist ms p50 / p99 | search ms p50 / p99 | genuine in shortlist "
            "| ratio to exact | load s | mapped load: codes mapped / in RSS, anon MB | meets |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *(_row(r) for r in rows),
            "",
        ]
        for r in rows:
            if "agrees_with_reference" in r:
                lines.append(f"`Flat (FAISS alone)`: an `IndexFlatIP` filled in place; its "
                             f"shortlist agrees with the brute-force reference on "
                             f"{r['agrees_with_reference']:.3f} of 200 probes.")
                lines.append("")
    if rerank:
        lines += [
            "## Code re-rank",
            "",
            f"`palmpay.match.code_scores` of one probe against {rerank['codes']} gallery codes "
            "(50 shortlisted identities × 5 samples; 49 shifts; best of 7 repeats, ms; "
            "`--rerank`): vectorised word path "
            f"{rerank['word_ms']:.2f} ms ({rerank['word_masked_ms']:.2f} ms with the "
            f"cancelable mask); the first popcount path, one shift at a time, "
            f"{rerank['loop_ms']:.2f} ms; the BLAS path (17 probes, the whole block) "
            f"{rerank['blas_17_probes_ms']:.2f} ms.",
            "",
        ]
    lines += [line.format(**real) for line in CHOICE]
    DOC.write_text("\n".join(lines) + "\n")
    print(f"wrote {DOC}")


#: The decision drawn from the tables (kept in step with palmpay/index/__init__.py by hand).
CHOICE: list[str] = [
    "## Choice",
    "",
    "`PalmIndex` defaults to `PCAR192,PQ64x4fs,Refine(PCAR192,SQ8)` with `k_factor` 16 "
    "(`Settings.index_factory`, `index_k_factor`): a PCA to 192 dimensions, a 4-bit "
    "fast-scan product quantizer (32 bytes a sample) scanned over every sample, and its "
    "16 × 50 best candidates re-scored on 8-bit codes of the same 192 dimensions. At 1 M it "
    "is the one structure measured that keeps ≥ 0.995 of exact search's genuine palms with "
    "search p99 under 5 ms; what decided it:",
    "",
    "- **The probes are far from their palms.** A genuine second-session vector has a cosine "
    "of {genuine_mean:.2f} on average to its enrolled samples (5th percentile "
    "{genuine_p5:.2f}), while one real impostor sample in a thousand reaches "
    "{impostor_p999:.2f}: a million-sample gallery holds a thousand such. A structure that "
    "looks only near the probe misses palms: "
    "IVF recall grows only with the share of lists scanned (PCA-128 IVF1024 at nprobe 128, "
    "an eighth of the gallery: 0.990 of exact, search p99 10.6 ms), and HNSW's greedy graph "
    "walk finds far fewer (`PCAR128,HNSW32` at 1 M: 0.55 of exact at efSearch 256). A scan "
    "of every sample on small codes, with an exact-enough re-score of the best candidates, "
    "does not have that blind spot.",
    "- **FAISS's PCA must be trained uncentred.** `PCAMatrix` subtracts the training mean from "
    "queries and samples, which reorders inner products when vectors share a large mean (palm "
    "vectors: norm 0.35); trained on the vectors and their negatives it has mean 0 and keeps "
    "inner products (`palmpay.index.structure.train`). At 1 M, exact search in 256 PCA "
    "dimensions kept 0.993 of exact search's genuine palms centred (`centred:PCAR256,Flat`) "
    "and 1.002 uncentred (`PCAR256,Flat`).",
    "- **192 dimensions, not 128 or 256.** 128 caps at ≈ 0.993 at 1 M whatever the "
    "quantizer; 256 with the same 32-byte PQ quantizes coarser per dimension and ends lower "
    "(0.9965), and a 64-byte PQ over 256 dimensions scans twice the bytes (over 5 ms).",
    "- **Memory.** 237 MB of FAISS data at 1 M plus 768 MB of codes and 61 MB of identity "
    "tables: 1.07 GB if every code page is resident, *over the 1 GB target by 7 %*. Loaded "
    "memory-mapped (how a started process reads it) the anonymous memory added is ≈ 90 MB; "
    "the rest is the file's page cache, which the kernel shares and reclaims.",
    "- **Below `Settings.index_train_size` samples (50,000) the index searches exactly** (a "
    "flat buffer), so small galleries and the tests see exact results; at that size it trains "
    "itself on the enrolled vectors, inside that enrollment (8 s here: the *train s* column, "
    "50,000 vectors).",
    "",
    "The distractors are synthetic: a Gaussian with the mean and covariance of the real "
    "templates. Against the 3,000 real probes their cosine tail is the real impostors' "
    "(99.9th percentile {synthetic_p999:.3f} synthetic vs {impostor_p999:.3f} real "
    "impostors; means {synthetic_mean:.3f} vs {impostor_mean:.3f}). The "
    "benchmark (docs/benchmarks.md) re-measures the chosen structure on its own gallery.",
]


def rerank_timing() -> dict:
    """One probe against 250 gallery codes (a shortlist of 50 identities × 5 samples), 49
    shifts: the vectorised word path against the first, loop-per-shift popcount path and the
    BLAS path (one thread: ``OMP/OPENBLAS`` threads are whatever the process has)."""
    import timeit

    from palmpay.match import _loop_scores, _word_scores, code_scores

    rng = np.random.default_rng(0)
    gallery = rng.integers(0, 256, (250, 768), np.uint8)
    probe = rng.integers(0, 256, (1, 768), np.uint8)
    mask = rng.integers(0, 256, 768, np.uint8)
    many = np.repeat(probe, 17, axis=0)  # past POPCOUNT_MAX_PROBES: the BLAS path

    def best(fn, number: int) -> float:
        return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e3

    return {"name": "rerank", "codes": 250,
            "word_ms": best(lambda: _word_scores(probe, gallery, 3, None), 50),
            "word_masked_ms": best(lambda: _word_scores(probe, gallery, 3, None, mask), 50),
            "loop_ms": best(lambda: _loop_scores(probe, gallery, 3, None), 5),
            "blas_17_probes_ms": best(lambda: code_scores(many, gallery), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--spec", nargs="*", default=[],
                        choices=[*SPECS, *(CENTRED + f for f in SPECS), "flat-reference"])
    parser.add_argument("--all", action="store_true", help="every spec")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--rerank", action="store_true", help="time the code re-rank")
    args = parser.parse_args()
    if args.report:
        write_report(sorted((CACHE / "results").glob("*.json")))
        return
    if args.rerank:
        CACHE.joinpath("results").mkdir(parents=True, exist_ok=True)
        result = rerank_timing()
        (CACHE / "results" / "rerank.json").write_text(json.dumps(result, indent=1))
        print(result)
        return
    faiss.omp_set_num_threads(2)
    embedder = PalmEmbedder()
    real = templates(embedder)
    synth = distractors(real["vectors"], 1_000_000)
    (results := CACHE / "results").mkdir(parents=True, exist_ok=True)
    (results / "realism.json").write_text(json.dumps(realism(real, synth), indent=1))
    hit = exact(real, synth, args.size)
    print(f"exact genuine-in-shortlist at {args.size:,}: {hit.mean():.4f}", flush=True)
    for name in (list(SPECS) if args.all else args.spec):
        start = time.perf_counter()
        done = ([flat_reference(args.size, real, synth)] if name == "flat-reference"
                else measure(name, args.size, real, synth, embedder))
        for result in done:
            result["exact_genuine_in_shortlist"] = float(hit.mean())
            slug = re.sub(r"[^A-Za-z0-9]+", "_", result["name"])
            (results / f"{args.size}_{slug}.json").write_text(json.dumps(result, indent=1))
            print(json.dumps(result), flush=True)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
