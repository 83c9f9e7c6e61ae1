"""Capture: open a frame source from one spec and judge each frame's quality.

A *source spec* is what a user types: a webcam index (``"0"``), a video file, a folder of
frames (sorted by name) or a single image. :func:`open_source` turns it into an iterator of
:class:`Frame` with a running index and a timestamp in seconds.

:func:`assess_quality` scores one frame for palm recognition. The three gates and their knobs
(all in :class:`palmpay.config.Settings`, higher minimums are stricter):

- **sharpness**: variance of the Laplacian of the palm region, resampled to 128 px wide so the
  number does not depend on how big the palm is (``min_sharpness``; motion blur drives it down);
- **exposure**: mean grey level of the palm region (``min_brightness`` .. ``max_brightness``);
- **palm size**: palm width over the frame's shorter side (``min_palm_fraction``); a palm far
  from the camera has too few pixels for its lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from palmpay.config import Settings, get_settings

__all__ = [
    "IMAGE_SUFFIXES",
    "Frame",
    "FrameSource",
    "Quality",
    "SourceError",
    "assess_quality",
    "open_source",
    "read_image",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
_QUALITY_WIDTH = 128


class SourceError(RuntimeError):
    """A frame source could not be opened or read."""


@dataclass(frozen=True)
class Frame:
    """One frame: ``image`` is BGR uint8, ``timestamp`` seconds from the start of the source."""

    index: int
    timestamp: float
    image: np.ndarray


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


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR uint8; raise :class:`SourceError` naming an unreadable file."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise SourceError(f"{path}: not a readable image")
    return image


class FrameSource:
    """Iterator of :class:`Frame` over a webcam, a video file, a frame folder or one image.

    Use as a context manager so a webcam or video is released. ``fps`` is used for timestamps of
    frame folders (and of videos whose container does not say).
    """

    def __init__(self, spec: str | int | Path, fps: float = 15.0) -> None:
        self.spec = str(spec)
        self.fps = fps
        self._capture: cv2.VideoCapture | None = None
        self._files: list[Path] | None = None
        path = Path(self.spec)
        if self.spec.isdigit() and not path.exists():
            self._open_capture(int(self.spec), live=True)
        elif path.is_dir():
            self._files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise SourceError(f"{path}: folder holds no image files")
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            self._files = [path]
        elif path.is_file():
            self._open_capture(str(path), live=False)
        else:
            raise SourceError(f"{self.spec}: no such webcam index, video, image or folder")

    def _open_capture(self, target: int | str, live: bool) -> None:
        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            raise SourceError(f"{target}: cannot open {'webcam' if live else 'video'}")
        self._live = live
        reported = capture.get(cv2.CAP_PROP_FPS)
        if not live and reported and reported > 0:
            self.fps = float(reported)
        self._capture = capture

    def __iter__(self) -> Iterator[Frame]:
        if self._files is not None:
            for index, file in enumerate(self._files):
                yield Frame(index, index / self.fps, read_image(file))
            return
        if self._capture is None:
            raise SourceError(f"{self.spec}: source is closed")
        start = time.monotonic()
        index = 0
        while True:
            ok, image = self._capture.read()
            if not ok or image is None:
                break
            stamp = time.monotonic() - start if self._live else index / self.fps
            yield Frame(index, stamp, image)
            index += 1
        if index == 0:
            raise SourceError(f"{self.spec}: no frame could be decoded")

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(spec: str | int | Path, fps: float = 15.0) -> FrameSource:
    """Open a webcam index (``"0"``), video file, frame folder or single image as frames."""
    return FrameSource(spec, fps=fps)


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
