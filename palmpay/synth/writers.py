"""Files: videos (MP4/AVI via OpenCV, uncompressed Y4M) and galleries of hand photos.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from palmpay.synth.canvas import hand_canvas
from palmpay.synth.identity import HandIdentity, palm_id, seed_seq
from palmpay.synth.render import check_size, render_hand
from palmpay.synth.variation import Variation, VariationRanges

__all__ = ["write_gallery", "write_video", "write_y4m"]

log = logging.getLogger(__name__)


def _frame_size(frames: Sequence[np.ndarray]) -> tuple[int, int]:
    if len(frames) == 0:
        raise ValueError("frames is empty")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.shape != frames[0].shape or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(
                f"frame {i} has shape {f.shape} dtype {f.dtype}; all frames must be "
                f"uint8 {frames[0].shape} BGR"
            )
    return w, h


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float = 15) -> Path:
    """Write ``frames`` (BGR uint8, all one size) to a video file and return its path.

    ``.mp4`` uses the ``mp4v`` (MPEG-4 part 2) FourCC, which OpenCV's headless wheels write via
    their bundled FFmpeg; ``.avi`` uses ``MJPG``. Raises ``RuntimeError`` if the writer cannot
    be opened (e.g. another extension with no codec).
    """
    path = Path(path)
    w, h = _frame_size(frames)
    fourcc = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}.get(path.suffix.lower())
    if fourcc is None:
        raise ValueError(f"video path {path} must end in .mp4, .avi or .mkv")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter could not open {path} with FourCC {fourcc}")
    try:
        for f in frames:
            writer.write(f)
    finally:
        writer.release()
    log.info("wrote %d frames (%dx%d @ %g fps) to %s", len(frames), w, h, fps, path)
    return path


def write_y4m(path: str | Path, frames: Sequence[np.ndarray], fps: int = 15) -> Path:
    """Write ``frames`` as an uncompressed YUV4MPEG2 file (``C420jpeg``, progressive, square
    pixels), e.g. for Chromium's ``--use-file-for-fake-video-capture``. Width and height must
    be even (4:2:0 chroma subsampling)."""
    path = Path(path)
    w, h = _frame_size(frames)
    if w % 2 or h % 2:
        raise ValueError(f"frame size {w}x{h} must be even for 4:2:0 Y4M")
    fps_i = int(round(fps))
    if fps_i < 1 or abs(fps - fps_i) > 1e-9:
        raise ValueError(f"fps={fps} must be a positive integer for Y4M")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F{fps_i}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for f in frames:
            fh.write(b"FRAME\n")
            fh.write(cv2.cvtColor(f, cv2.COLOR_BGR2YUV_I420).tobytes())
    log.info("wrote %d frames (%dx%d @ %d fps) to %s", len(frames), w, h, fps_i, path)
    return path


def write_gallery(
    directory: str | Path,
    identities: Iterable[HandIdentity | int],
    samples_per_palm: int = 5,
    seed: int = 0,
    hands: Sequence[str] = ("right",),
    size: tuple[int, int] = (640, 480),
    ranges: VariationRanges | None = None,
    sessions: int = 0,
) -> dict[str, list[Path]]:
    """Write ``<directory>/<palm-id>/<n>.png`` full-hand photos, ``samples_per_palm`` per palm.

    Every ``(identity, hand)`` in ``identities × hands`` is a palm named :func:`palm_id`; each
    sample is a different :meth:`Variation.random` draw from ``ranges`` (default
    :data:`TEST_RANGES`), deterministic in ``seed``. With ``sessions=S > 0`` the samples are
    split into S consecutive acquisition sessions named ``s<k>_<n>.png`` (k = 1..S), the
    naming :mod:`palmpay.dataset` reads for the enroll-session-1 / probe-session-2 protocol.
    Returns ``{palm_id: [paths]}``.
    """
    directory = Path(directory)
    if samples_per_palm < 1:
        raise ValueError(f"samples_per_palm={samples_per_palm} must be >= 1")
    if sessions < 0 or sessions > samples_per_palm:
        raise ValueError(f"sessions={sessions} must be in 0..samples_per_palm={samples_per_palm}")
    w, h = check_size(size)
    out: dict[str, list[Path]] = {}
    for ident in identities:
        identity = ident if isinstance(ident, HandIdentity) else HandIdentity.from_seed(ident)
        for hand in hands:
            pid = palm_id(identity, hand)
            folder = directory / pid
            folder.mkdir(parents=True, exist_ok=True)
            rng = seed_seq("gallery", seed, identity.seed, hand)
            paths = []
            for n in range(samples_per_palm):
                var = Variation.random(rng, ranges, size=(w, h), hand=hand)
                name = f"{n}.png"
                if sessions > 0:
                    name = f"s{n * sessions // samples_per_palm + 1}_{name}"
                p = folder / name
                if not cv2.imwrite(str(p), render_hand(identity, var, (w, h))):
                    raise RuntimeError(f"cv2.imwrite failed for {p}")
                paths.append(p)
            out[pid] = paths
        hand_canvas.cache_clear()  # one identity at a time: keep memory flat for big galleries
    log.info("wrote gallery of %d palms to %s", len(out), directory)
    return out
