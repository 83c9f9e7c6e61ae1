"""Reference hand landmarks from MediaPipe itself, for tests/roi/test_roi_mediapipe.py.

Runs under a separate interpreter that has ``mediapipe==0.10.21`` (never a PalmPay dependency):

    python3.11 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.21
    /tmp/mpvenv/bin/python tests/roi/mediapipe_reference.py --complexity 1 a.jpg b.jpg > ref.json

Prints one JSON object: ``{"version": ..., "results": {path: null | {"landmarks": [[x, y, z] x 21]
(x, y in pixels, z in x's pixel units), "label": MediaPipe's handedness label, "score": ...}}}``.
MediaPipe Hands runs with ``static_image_mode=True`` and ``max_num_hands=1``, so palm detection runs
on every image, as in :meth:`palmpay.roi.PalmRoiExtractor.extract`.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2
import mediapipe as mp

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--complexity", type=int, choices=(0, 1), default=1)
    parser.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    with mp.solutions.hands.Hands(
        static_image_mode=True,
        max_num_hands=1,
        model_complexity=args.complexity,
        min_detection_confidence=0.5,
    ) as hands:
        for path in args.images:
            image = cv2.imread(path)
            if image is None:
                raise FileNotFoundError(path)
            height, width = image.shape[:2]
            found = hands.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if not found.multi_hand_landmarks:
                results[path] = None
                continue
            points = found.multi_hand_landmarks[0].landmark
            label = found.multi_handedness[0].classification[0]
            results[path] = {
                "landmarks": [[p.x * width, p.y * height, p.z * width] for p in points],
                "label": label.label,
                "score": label.score,
            }
    json.dump({"version": mp.__version__, "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
