"""Capture: open a frame source from one spec and read its frames.

A *source spec* is what a user types: a webcam index (``"0"``), a video file, a folder of
frames (sorted by name) or a single image. :func:`open_source` turns it into an iterator of
:class:`Frame` with a running index and a timestamp in seconds.

This is the first stage of the live path and imports no later one; the per-frame quality
gates are in :mod:`palmpay.quality`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "Frame",
    "FrameSource",
    "SourceError",
    "open_source",
    "read_image",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


class SourceError(RuntimeError):
    """A frame source could not be opened or read."""


@dataclass(frozen=True)
class Frame:
    """One frame: ``image`` is BGR uint8, ``timestamp`` seconds from the start of the source."""

    index: int
    timestamp: float
    image: np.ndarray


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
