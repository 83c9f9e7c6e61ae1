"""Calibrate the decision threshold of ``compcode.onnx`` and write ``models/compcode.json``.

    python models/calibrate.py [DATASET] [--far 1e-4] [--max-shift 3] [--model models/compcode.onnx]

``DATASET`` (default ``../shared/data/tongji-dev`` relative to the repository) is a folder of
palms, one sub-folder each, holding already-cropped 128×128 grey ROIs named ``s1_*.png`` (first
session) and ``s2_*.png`` (second session). Sessions protocol: every s2 image is compared with
every s1 image (image vs image), same palm = genuine, different palm = impostor. The threshold is
the smallest code score with impostor FAR ≤ ``--far`` (:func:`palmpay.metrics.far_threshold`).

The JSON records the model's sha256, so :class:`palmpay.embed.PalmEmbedder` refuses a stale
calibration. Runtime code reads the threshold from there and never hard-codes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # runnable as a script from a source checkout
    sys.path.insert(0, str(REPO))

from palmpay import metrics  # noqa: E402
from palmpay.config import Settings  # noqa: E402
from palmpay.embed import DEFAULT_MAX_SHIFT, PalmEmbedder, code_scores  # noqa: E402

__all__ = ["load_sessions", "calibrate", "main"]

log = logging.getLogger(__name__)

DEFAULT_DATASET = REPO.parent / "shared" / "data" / "tongji-dev"
DEFAULT_MODEL = REPO / "models" / "compcode.onnx"


def load_sessions(root: Path) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """``(gallery_rois, gallery_labels, probe_rois, probe_labels)``: s1 images are the gallery,
    s2 images the probes; labels are the palm folder indices (sorted names)."""
    palms = sorted(p for p in Path(root).iterdir() if p.is_dir())
    if not palms:
        raise FileNotFoundError(f"no palm folders in {root}")
    out: dict[str, tuple[list[np.ndarray], list[int]]] = {"s1": ([], []), "s2": ([], [])}
    for label, palm in enumerate(palms):
        for session, (rois, labels) in out.items():
            for file in sorted(palm.glob(f"{session}_*.png")):
                roi = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
                if roi is None or roi.shape != (128, 128):
                    shape = None if roi is None else roi.shape
                    raise ValueError(f"{file}: expected a 128x128 grey ROI, got {shape}")
                rois.append(roi)
                labels.append(label)
    for session, (rois, _) in out.items():
        if not rois:
            raise FileNotFoundError(f"no {session}_*.png images under {root}")
    (g, gl), (p, pl) = out["s1"], out["s2"]
    return g, np.array(gl), p, np.array(pl)


def calibrate(dataset: Path, model: Path, far: float, max_shift: int, threads: int) -> dict:
    """Embed, score all s2×s1 pairs, and return the calibration record."""
    settings = Settings(intra_op_threads=threads)
    embedder = PalmEmbedder(settings, path=model, load_meta=False)
    gallery, gallery_labels, probes, probe_labels = load_sessions(dataset)
    t0 = time.perf_counter()
    _, gallery_codes = embedder.embed_many(gallery)
    _, probe_codes = embedder.embed_many(probes)
    t1 = time.perf_counter()
    scores = code_scores(probe_codes, gallery_codes, max_shift)
    t2 = time.perf_counter()
    log.info("embedded %d ROIs in %.1fs, scored in %.1fs", len(gallery) + len(probes), t1 - t0,
             t2 - t1)
    mated = probe_labels[:, None] == gallery_labels[None, :]
    positives, negatives = scores[mated], scores[~mated]
    threshold = metrics.far_threshold(negatives, positives, far)
    far_at, frr_at = metrics.far_frr(negatives, positives, threshold)
    record = {
        "model": model.name,
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "score": "code",
        "score_range": [0.0, 1.0],
        "accept": "score >= threshold",
        "far": far,
        "threshold": threshold,
        "max_shift": max_shift,
        "dim": embedder.dim,
        "code_bytes": embedder.code_bytes,
        "input": "uint8 grey ROI 128x128 / 255, float32 N x 1 x 128 x 128",
        "calibration": {
            "dataset": Path(dataset).name,
            "protocol": "sessions: s2 probes vs s1 gallery, image vs image, all pairs",
            "palms": int(len(np.unique(gallery_labels))),
            "genuine_pairs": int(positives.size),
            "impostor_pairs": int(negatives.size),
            "eer": metrics.eer(negatives, positives),
            "far_at_threshold": far_at,
            "frr_at_far": frr_at,
            "rank1": metrics.rank1(scores, probe_labels, gallery_labels),
        },
    }
    return record


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, nargs="?", default=DEFAULT_DATASET)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--far", type=float, default=1e-4)
    parser.add_argument("--max-shift", type=int, default=DEFAULT_MAX_SHIFT)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0=auto)")
    parser.add_argument("--out", type=Path, help="default: <model>.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = calibrate(args.dataset, args.model, args.far, args.max_shift, args.threads)
    out = args.out or args.model.with_suffix(".json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    log.info("wrote %s: threshold %.6f at FAR %g (EER %.4f%%, FRR@FAR %.4f%%)", out,
             record["threshold"], args.far, 100 * record["calibration"]["eer"],
             100 * record["calibration"]["frr_at_far"])


if __name__ == "__main__":
    main()
