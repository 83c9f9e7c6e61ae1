"""Quality: the per-frame gates that decide whether a palm ROI is good enough to match.

:func:`assess_quality` scores one frame for palm recognition. The three gates and their knobs
(all in :class:`palmpay.config.Settings`, higher minimums are stricter):

- **sharpness**: variance of the Laplacian of the palm region, resampled to 128 px wide so the
  number does not depend on how big the palm is (``min_sharpness``; motion blur drives it down);
- **exposure**: mean grey level of the palm region (``min_brightness`` .. ``max_brightness``);
- **palm size**: palm width over the frame's shorter side (``min_palm_fraction``); a palm far
  from the camera has too few pixels for its lines.

The gates take the palm's bounding box and width in frame pixels as plain numbers, so this
module needs nothing from :mod:`palmpay.roi`; :class:`palmpay.pipeline.Pipeline` passes them
from the ROI stage's result.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from palmpay.config import Settings, get_settings

__all__ = ["Quality", "assess_quality"]

_QUALITY_WIDTH = 128


@dataclass(frozen=True)
class Quality:
    """Per-frame quality. ``problems`` names the failed gates; empty means the frame is usable."""

    sharpness: float
    brightness: float
    palm_fraction: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def assess_quality(
    image_bgr: np.ndarray,
    region: tuple[int, int, int, int] | None,
    palm_width: float,
    settings: Settings | None = None,
) -> Quality:
    """Judge a frame for recognition.

    ``region`` is the palm's bounding box ``(x0, y0, x1, y1)`` in frame pixels (None when no hand:
    the whole frame is measured and the palm-size gate fails); ``palm_width`` its width in pixels.
    """
    settings = settings or get_settings()
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    height, width = gray.shape[:2]
    if region is not None:
        x0, y0, x1, y1 = region
        x0, y0 = max(0, int(x0)), max(0, int(y0))
        x1, y1 = min(width, int(x1)), min(height, int(y1))
        if x1 - x0 >= 4 and y1 - y0 >= 4:
            gray = gray[y0:y1, x0:x1]
    scale = _QUALITY_WIDTH / gray.shape[1]
    patch = cv2.resize(gray, (_QUALITY_WIDTH, max(4, round(gray.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    sharpness = float(cv2.Laplacian(patch, cv2.CV_64F).var())
    brightness = float(patch.mean())
    palm_fraction = float(palm_width) / float(min(height, width))
    problems = []
    if sharpness < settings.min_sharpness:
        problems.append("blurred")
    if brightness < settings.min_brightness:
        problems.append("too_dark")
    elif brightness > settings.max_brightness:
        problems.append("too_bright")
    if palm_fraction < settings.min_palm_fraction:
        problems.append("palm_too_small")
    return Quality(sharpness, brightness, palm_fraction, tuple(problems))
