"""CPU milliseconds of one pay-by-palm request, in process, split by stage.

Each request runs what ``POST /v1/payments`` runs between the multipart parser and the database:
:func:`palmpay.api.images.open_images` (header checks, decode slot, decode),
:meth:`PalmDirectory.probe_live` (tracking ROI, quality, embed, liveness as the settings say)
and :meth:`PalmDirectory.match` over the whole gallery. The stages are timed by
:mod:`palmpay.cputime` (the calling thread's CPU time); ``process`` is the process's CPU time
of the whole request (``time.process_time``), so threads that a library starts on its own
would show up there and not in the stages. OpenCV and FAISS run with
``Settings.library_threads`` (default 1; ``--library-threads 0``: all cores, as before it
existed), onnxruntime with ``intra_op_threads`` (default 1), as in the server.

Frames: synthetic hands (:mod:`palmpay.synth`), ``--customers`` people enrolled from 4 stills
each (as the kiosk does, through :meth:`PalmDirectory.enroll`), and for each payment one
presentation of an enrolled hand: ``--frames`` frames of the steady part of a clip
(:func:`palmpay.synth.presentation_frames`, every other video frame), 640×480 JPEG at quality 92
like the kiosk's uploads. With ``--coep DIR`` (coep-dev) a second set of payments uses the
4 photos of one palm as the frames of a payment (still JPEG photos of a hand on pegs, 800×600);
every palm is enrolled from the same photos, so that set measures cost, not accuracy.

    .venv/bin/python scripts/probe_cost.py                    # 30 payments, report liveness
    .venv/bin/python scripts/probe_cost.py --liveness off --json
    .venv/bin/python scripts/probe_cost.py --models lite      # palm_detection_lite + landmark_lite

:func:`measure_payment` is the one request, for other harnesses (``palmpay bench``) to reuse.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from fastapi import UploadFile

from palmpay import synth
from palmpay.api.images import open_images
from palmpay.api.palms import PalmDirectory
from palmpay.config import Settings
from palmpay.cputime import STAGES, StageSplit, measure
from palmpay.payments.cancelable import TemplateTransform
from palmpay.recognizer import Recognizer

__all__ = ["measure_payment", "synthetic_payments"]

MODELS = {
    "full": ("palm_detection_full.onnx", "hand_landmark_full.onnx"),
    "lite": ("palm_detection_lite.onnx", "hand_landmark_lite.onnx"),
}
FRAME_SIZE = (640, 480)
JPEG_QUALITY = 92


def jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return data.tobytes()


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def uploads(blobs: Sequence[bytes], name: str = "frame") -> list[UploadFile]:
    return [UploadFile(io.BytesIO(b), filename=f"{name}{n}.jpg") for n, b in enumerate(blobs)]


def measure_payment(palms: PalmDirectory, frames: Sequence[bytes], settings: Settings
                    ) -> tuple[str | None, float, StageSplit, float]:
    """One pay request's image work: decode, :meth:`~PalmDirectory.probe_live` (liveness
    unless ``settings.liveness`` is off), :meth:`~PalmDirectory.match`. Returns the customer
    (or None), the fused score, the stage split (this thread's CPU) and the process CPU ms."""
    files = uploads(frames)
    start = time.process_time()
    with measure() as meter:
        with open_images(files, "frames", settings, minimum=1) as decoded:
            templates, _ = palms.probe_live(decoded, settings.liveness != "off")
        who, score = palms.match(templates)
    return who, score, meter.split, 1000 * (time.process_time() - start)


def synthetic_payments(customers: int, payments: int, frames: int, seed: int = 0
                       ) -> tuple[dict[str, list[bytes]], list[tuple[str, list[bytes]]]]:
    """``customers`` enrollments (4 PNG stills each) and ``payments`` presentations (JPEG
    frames) of them in turn: ``({name: stills}, [(name, frames)])``."""
    rng = np.random.default_rng(seed)
    people = {f"c{i:03d}": synth.HandIdentity.from_seed(1000 + i) for i in range(customers)}
    enroll = {
        name: [png(synth.render_hand(who, synth.Variation.random(rng, synth.TEST_RANGES,
                                                                 size=FRAME_SIZE)))
               for _ in range(4)]
        for name, who in people.items()
    }
    names = list(people)
    clips = []
    for n in range(payments):
        name = names[n % len(names)]
        clip = synth.presentation_frames(people[name], 2 * frames, seed=seed + n, size=FRAME_SIZE,
                                         enter_fraction=0.0, leave_fraction=0.0)
        clips.append((name, [jpeg(f) for f in clip[::2]]))
    return enroll, clips


def coep_payments(root: Path) -> tuple[dict[str, list[bytes]], list[tuple[str, list[bytes]]]]:
    """coep-dev: every palm enrolled from its photos, and paid with the same photos (cost only:
    the frames are the enrolment images)."""
    enroll, clips = {}, []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        blobs = [p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix.lower() == ".jpg"]
        if len(blobs) >= 2:
            enroll[folder.name] = blobs
            clips.append((folder.name, blobs))
    return enroll, clips


def build_directory(settings: Settings, enroll: dict[str, list[bytes]]) -> tuple[
        PalmDirectory, int]:
    """A palm directory with a cancelable template transform (as the API's), every customer
    enrolled through :meth:`PalmDirectory.enroll`; returns it and the customers refused."""
    transform = TemplateTransform("bench", bytes(range(32)))
    palms = PalmDirectory(Recognizer(settings), settings, transform=transform)
    refused = 0
    for name, stills in enroll.items():
        with open_images(uploads(stills, "still"), "images", settings) as decoded:
            try:
                palms.add(name, palms.enroll(decoded))
            except Exception:  # noqa: BLE001  (a refused enrolment: count it, go on)
                refused += 1
    return palms, refused


def run(settings: Settings, enroll: dict[str, list[bytes]],
        clips: list[tuple[str, list[bytes]]], warmup: int = 2) -> dict[str, object]:
    """Every payment of ``clips`` through :func:`measure_payment`; medians per stage."""
    palms, refused = build_directory(settings, enroll)
    for _, frames in clips[:warmup]:
        measure_payment(palms, frames, settings)
    splits, process, right, detections = [], [], 0, []
    for name, frames in clips:
        try:
            who, _, split, cpu = measure_payment(palms, frames, settings)
        except Exception as err:  # noqa: BLE001  (palm_not_found: counted as a miss)
            print(f"{name}: {err}", file=sys.stderr)
            continue
        splits.append(split)
        process.append(cpu)
        right += who == name
        detections.append(split.calls.get("detection", 0))
    keys = [*STAGES, *sorted({k for s in splits for k in s.cpu_ms} - set(STAGES))]
    per_stage = {k: statistics.mean(s.cpu_ms.get(k, 0.0) for s in splits) for k in keys}
    return {
        "payments": len(clips),
        "measured": len(splits),
        "identified_right": right,
        "enrolled": len(enroll) - refused,
        "frames_per_payment": statistics.mean(len(f) for _, f in clips),
        "detector_runs_per_payment": statistics.mean(detections) if detections else 0.0,
        "stage_mean_ms": per_stage,
        "other_mean_ms": statistics.mean(s.other_ms for s in splits),
        "thread_total_median_ms": statistics.median(s.total_ms for s in splits),
        "process_median_ms": statistics.median(process),
        "process_p90_ms": float(np.percentile(process, 90)),
        "process_mean_ms": statistics.mean(process),
    }


def report(title: str, r: dict[str, object]) -> str:
    stages = r["stage_mean_ms"]
    assert isinstance(stages, dict)
    lines = [f"## {title}", "",
             f"{r['measured']} of {r['payments']} payments measured, "
             f"{r['frames_per_payment']:.0f} frames each; right customer identified in "
             f"{r['identified_right']}; palm detector runs per payment "
             f"{r['detector_runs_per_payment']:.2f}; {r['enrolled']} customers enrolled.", "",
             "| stage | mean CPU ms per payment |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in stages.items()]
    lines += [f"| other (outside the stages) | {r['other_mean_ms']:.2f} |",
              f"| **process CPU per payment, median** | **{r['process_median_ms']:.1f}** "
              f"(p90 {r['process_p90_ms']:.1f}) |", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--customers", type=int, default=10)
    ap.add_argument("--payments", type=int, default=30)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--liveness", choices=("off", "report", "enforce"), default="report")
    ap.add_argument("--models", choices=sorted(MODELS), default="full")
    ap.add_argument("--coep", type=Path, help="coep-dev folder: also measure on its photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--library-threads", type=int, default=1,
                    help="Settings.library_threads: OpenCV and FAISS threads (0: all cores)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    detector, landmarker = MODELS[args.models]
    settings = Settings(liveness=args.liveness, palm_detector=detector, hand_landmarker=landmarker,
                        library_threads=args.library_threads)
    results = {"synthetic": run(settings, *synthetic_payments(args.customers, args.payments,
                                                              args.frames, args.seed))}
    if args.coep:
        results["coep"] = run(settings, *coep_payments(args.coep))
    if args.json:
        print(json.dumps({"liveness": args.liveness, "models": args.models, **results},
                         indent=2))
    else:
        print(f"# pay-by-palm CPU per request (liveness {args.liveness}, {args.models} models)\n")
        for name, r in results.items():
            print(report(name, r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
