"""Per-stage latency of ``palmpay.roi`` on 640x480 frames (median ms, 1 onnxruntime thread).

    .venv/bin/python scripts/bench_roi.py                       # a coep-dev photo if present
    .venv/bin/python scripts/bench_roi.py --image hand.jpg --runs 100

Stages: palm detection (letterbox + ONNX + decode + NMS), landmarks (crop + ONNX + mapping), the
ROI cut (:func:`palm_roi`), and a whole :meth:`PalmRoiExtractor.track` frame while tracking (no
detection). Without an image a synthetic frame is used, which only makes sense for the detector
timing (no hand is found in it, so the later stages reuse a fixed hand).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from palmpay.config import Settings
from palmpay.roi import Hand, PalmRoiExtractor, detection_rect, palm_roi

__all__ = ["main", "median_ms"]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared/data/coep-dev/001/1.jpg"
FRAME_SIZE = (640, 480)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="hand photo to time on")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--detector", default=None, help="palm detector ONNX (default: settings)")
    parser.add_argument("--landmarker", default=None, help="landmark ONNX (default: settings)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    overrides = {"intra_op_threads": args.threads}
    if args.detector:
        overrides["palm_detector"] = args.detector
    if args.landmarker:
        overrides["hand_landmarker"] = args.landmarker
    settings = Settings(**overrides)
    cv2.setNumThreads(args.threads)
    extractor = PalmRoiExtractor(settings)
    frame = load_frame(args.image)
    height, width = frame.shape[:2]

    detections = extractor.detector.detect(frame)
    if detections:
        rect = detection_rect(detections[0])
        hand = extractor.landmarker.run(frame, rect)
    else:
        log.info("no hand in the frame: landmark/ROI timings use a fixed synthetic hand")
        rect, hand = None, synthetic_hand(width, height)
    stages: list[tuple[str, Callable[[], object]]] = [
        (f"palm detection ({settings.palm_detector})", lambda: extractor.detector.detect(frame)),
        (f"landmarks ({settings.hand_landmarker})", lambda: extractor.landmarker.run(frame, rect)),
        ("ROI cut (palm_roi)", lambda: palm_roi(frame, hand)),
        ("track() per frame, while tracking", lambda: extractor.track(frame)),
        ("extract() per frame, with detection", lambda: extractor.extract(frame)),
    ]
    if rect is None:
        stages = [stages[0], stages[2]]
    print(
        f"palmpay.roi latency on {width}x{height}, median of {args.runs} runs, "
        f"{args.threads} onnxruntime/OpenCV thread(s); wall and process-CPU time"
    )
    for name, func in stages:
        wall, cpu = median_ms(func, args.runs)
        print(f"  {name:<45} {wall:7.2f} ms wall {cpu:7.2f} ms cpu")
    return 0


def median_ms(func: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall and process-CPU time of ``func`` in ms, after 3 warm-up calls.

    On a shared machine the CPU time is the better estimate of the cost; on an idle one they agree.
    """
    for _ in range(3):
        func()
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        func()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return 1000 * statistics.median(walls), 1000 * statistics.median(cpus)


def load_frame(path: Path) -> np.ndarray:
    """The photo resized to 640x480, or a synthetic grey frame when it does not exist."""
    image = cv2.imread(str(path)) if path.is_file() else None
    if image is None:
        log.info("%s not found: using a synthetic frame", path)
        rng = np.random.default_rng(0)
        return rng.integers(0, 255, (FRAME_SIZE[1], FRAME_SIZE[0], 3), dtype=np.uint8)
    return cv2.resize(image, FRAME_SIZE, interpolation=cv2.INTER_AREA)


def synthetic_hand(width: int, height: int) -> Hand:
    """A plausible upright right hand in the middle of the frame (for timing the cut only)."""
    landmarks = np.zeros((21, 3), np.float32)
    cx, cy, unit = width / 2, height / 2, min(width, height) / 8
    landmarks[0] = (cx, cy + 1.2 * unit, 0)
    landmarks[5] = (cx + unit, cy - unit, 0)
    landmarks[9] = (cx, cy - unit, 0)
    landmarks[17] = (cx - unit, cy - unit, 0)
    return Hand(landmarks=landmarks, handedness="right", score=1.0, presence=1.0)


if __name__ == "__main__":
    sys.exit(main())
