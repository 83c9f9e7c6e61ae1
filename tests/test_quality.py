"""palmpay.quality: the sharpness, exposure and palm-size gates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from palmpay.config import Settings
from palmpay.quality import assess_quality


def _texture(seed: int = 0, shape=(240, 320)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gray = rng.integers(60, 200, size=shape, dtype=np.uint8)
    return cv2.cvtColor(cv2.GaussianBlur(gray, (3, 3), 0), cv2.COLOR_GRAY2BGR)


def test_quality_gates():
    settings = Settings()
    sharp = _texture()
    region = (40, 40, 280, 200)
    good = assess_quality(sharp, region, palm_width=160, settings=settings)
    assert good.ok, good
    blurred = assess_quality(cv2.GaussianBlur(sharp, (0, 0), 6), region, 160, settings)
    assert "blurred" in blurred.problems and blurred.sharpness < good.sharpness
    dark = assess_quality((sharp * 0.1).astype(np.uint8), region, 160, settings)
    assert "too_dark" in dark.problems
    bright = assess_quality(np.full_like(sharp, 250), region, 160, settings)
    assert "too_bright" in bright.problems
    small = assess_quality(sharp, region, palm_width=10, settings=settings)
    assert small.problems == ("palm_too_small",)
    assert small.palm_fraction == pytest.approx(10 / 240)


def test_quality_thresholds_come_from_settings():
    sharp = _texture()
    strict = Settings(min_sharpness=1e9)
    assert "blurred" in assess_quality(sharp, None, 200, strict).problems
