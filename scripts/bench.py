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

This file is the entry point; the measuring lives in ``scripts/benchlib`` (the harness, the
gallery model, the experiments and the report: see that package's docstring).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchlib import experiments
from benchlib.harness import REPO, Run, write_report
from benchlib.report import bench_report
from benchlib.results import FULL, QUICK

__all__ = ["main"]


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
    run = Run.start(__file__, argv)
    results = experiments.run(QUICK if args.quick else FULL, args.threads, args.seed, args.quick)
    write_report(bench_report(run, results), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
