"""Our ONNX hand pipeline against MediaPipe Hands 0.10.21 itself, on real COEP photos.

MediaPipe is never a PalmPay dependency (0.10.21 pins numpy<2): it lives in a throw-away venv
whose interpreter is named by ``PALMPAY_MEDIAPIPE_PYTHON``; the test skips without it::

    python3.11 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.21
    PALMPAY_MEDIAPIPE_PYTHON=/tmp/mpvenv/bin/python .venv/bin/pytest tests/roi/test_roi_mediapipe.py

MediaPipe runs ``static_image_mode=True`` with ``model_complexity`` 0 (palm_detection_lite +
hand_landmark_lite) or 1 (palm_detection_full + hand_landmark_full); we run
:meth:`PalmRoiExtractor.extract` with the same two models. Measured on 10 COEP photos (800x600):
mean landmark distance 0.28 px (complexity 0; worst photo 0.58 px, worst point 1.1 px) and
0.23 px (complexity 1; worst photo 0.32 px, worst point 0.74 px).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from palmpay.config import Settings
from palmpay.roi import PalmRoiExtractor

SHARED_DATA = Path(__file__).parents[2].parent / "shared/data"
COEP = SHARED_DATA / "coep-dev"
REFERENCE_SCRIPT = Path(__file__).with_name("mediapipe_reference.py")
PHOTOS = 10
MAX_MEAN_PX = 0.75  # mean over photos of the mean landmark distance
MAX_PHOTO_PX = 1.5  # mean landmark distance on any single photo
MODELS = {
    0: ("palm_detection_lite.onnx", "hand_landmark_lite.onnx"),
    1: ("palm_detection_full.onnx", "hand_landmark_full.onnx"),
}


@pytest.fixture(scope="module")
def mediapipe_python() -> str:
    python = os.environ.get("PALMPAY_MEDIAPIPE_PYTHON")
    if not python:
        pytest.skip(
            "PALMPAY_MEDIAPIPE_PYTHON is unset: point it at a python with mediapipe==0.10.21 "
            "(python3.11 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.21)"
        )
    probe = subprocess.run(
        [python, "-c", "import mediapipe; print(mediapipe.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"{python} cannot import mediapipe: {probe.stderr.strip()[-300:]}")
    return python


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    paths = sorted(COEP.glob("*/*.jpg"))
    if not paths:
        pytest.skip(f"real dataset {COEP} is absent (../shared/data is only on dev machines/CI)")
    step = max(1, len(paths) // PHOTOS)
    return paths[::step][:PHOTOS]


@pytest.mark.parametrize("complexity", sorted(MODELS))
def test_landmarks_match_mediapipe(
    mediapipe_python: str, photos: list[Path], complexity: int
) -> None:
    reference = run_reference(mediapipe_python, photos, complexity)
    detector, landmarker = MODELS[complexity]
    extractor = PalmRoiExtractor(Settings(palm_detector=detector, hand_landmarker=landmarker))
    per_photo = {}
    for path in photos:
        expected = reference[str(path)]
        assert expected is not None, f"MediaPipe found no hand in {path}"
        result = extractor.extract(cv2.imread(str(path)))
        assert result.hand is not None, f"{path}: {result.reason}"
        distance = np.linalg.norm(
            np.asarray(expected["landmarks"])[:, :2] - result.hand.landmarks[:, :2], axis=1
        )
        per_photo[f"{path.parent.name}/{path.name}"] = round(float(distance.mean()), 3)
        # MediaPipe labels a non-mirrored right hand "Left" (it assumes a selfie view).
        assert result.hand.handedness == {"Left": "right", "Right": "left"}[expected["label"]]
        assert result.hand.score == pytest.approx(expected["score"], abs=0.03)
    mean = float(np.mean(list(per_photo.values())))
    assert mean < MAX_MEAN_PX, per_photo
    assert max(per_photo.values()) < MAX_PHOTO_PX, per_photo


def run_reference(python: str, photos: list[Path], complexity: int) -> dict:
    completed = subprocess.run(
        [python, str(REFERENCE_SCRIPT), "--complexity", str(complexity), *map(str, photos)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"mediapipe reference failed: {completed.stderr[-2000:]}")
    output = json.loads(completed.stdout)
    assert output["version"] == "0.10.21"
    return output["results"]
