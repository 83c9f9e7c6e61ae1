"""Frames: a :class:`Variation` places the cached canvas over a background, then lights it.

:func:`render_hand` (and :func:`render_hand_and_mask`) warp the canvas with a perspective
homography (in-plane rotation, tilt, scale, position) over a ``dark``, ``textured`` or
``bright`` background, and apply scene lighting, white balance, blur and sensor noise;
:func:`render_no_hand` renders the same scene without the hand.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from palmpay.synth.canvas import CANVAS_LEVELS, CANVAS_W0, Canvas, hand_canvas, noise_field
from palmpay.synth.identity import HandIdentity, seed_seq
from palmpay.synth.shapes import smoothstep
from palmpay.synth.variation import Variation

__all__ = ["check_size", "render_hand", "render_hand_and_mask", "render_no_hand"]


@lru_cache(maxsize=8)
def _background(kind: str, seed: int, size: tuple[int, int]) -> np.ndarray:
    """A float32 BGR background: ``dark`` (dim, smooth), ``textured`` (mid-grey fabric/wood-like
    low-contrast texture in non-skin colours) or ``bright`` (white-ish wall)."""
    w, h = size
    rng = seed_seq("background", kind, seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = float(rng.uniform(0, 2 * math.pi))
    ramp = ((xx - w / 2) * math.cos(ang) + (yy - h / 2) * math.sin(ang)) / max(w, h)
    if kind == "dark":
        level = float(rng.uniform(18, 55))
        tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
        base = level * (1.0 + 0.5 * ramp)[..., None] * tint
        base += noise_field(rng, (h, w), 25.0)[..., None] * 3.0
    elif kind == "bright":
        level = float(rng.uniform(175, 230))
        tint = rng.uniform(0.92, 1.04, 3).astype(np.float32)
        base = level * (1.0 + 0.25 * ramp)[..., None] * tint
        base += noise_field(rng, (h, w), 30.0)[..., None] * 4.0
    else:
        # Cool/neutral tones keep skin-coloured blobs out of the background.
        palette = np.array(
            [[120, 90, 60], [90, 110, 80], [140, 140, 140], [150, 120, 100], [70, 70, 90]],
            np.float32,
        )
        c0 = palette[rng.integers(len(palette))]
        c1 = palette[rng.integers(len(palette))]
        blend = smoothstep(0.5 + 1.5 * noise_field(rng, (h, w), 60.0) * 0.3)[..., None]
        base = c0 * (1 - blend) + c1 * blend
        # Fabric/wood-like streaks plus fine grain.
        sang = float(rng.uniform(0, math.pi))
        freq = float(rng.uniform(0.05, 0.18))
        phase = noise_field(rng, (h, w), 20.0) * 2.0
        streak = np.sin((xx * math.cos(sang) + yy * math.sin(sang)) * freq + phase)
        base = base * (1.0 + 0.10 * streak[..., None] + 0.3 * ramp[..., None])
        base += noise_field(rng, (h, w), 1.2)[..., None] * 6.0
    base = base.astype(np.float32)
    base.setflags(write=False)  # cached: shared between frames
    return base


def _homography(variation: Variation, canvas: Canvas, size: tuple[int, int]) -> np.ndarray:
    """3×3 map from canvas pixels to frame pixels (rotation, tilt, scale, translation)."""
    w_img, h_img = size
    s = variation.palm_width_px / canvas.scale
    ox, oy = canvas.origin
    rz = math.radians(-variation.rotation_deg)  # image y points down: CCW = negative angle
    rx = math.radians(variation.tilt_x_deg)
    ry = math.radians(variation.tilt_y_deg)
    cz, sz = math.cos(rz), math.sin(rz)
    cxr, sxr = math.cos(rx), math.sin(rx)
    cyr, syr = math.cos(ry), math.sin(ry)
    r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    r_x = np.array([[1, 0, 0], [0, cxr, -sxr], [0, sxr, cxr]])
    r_y = np.array([[cyr, 0, syr], [0, 1, 0], [-syr, 0, cyr]])
    rot = r_z @ r_x @ r_y
    f = 1.1 * max(w_img, h_img)  # focal length in pixels
    z0 = f  # depth of the palm plane: scale 1 at the palm centre before ``s``
    cxp = variation.center[0] * w_img
    cyp = variation.center[1] * h_img
    # Canvas pixel -> hand plane (pixels at the palm centre's depth) -> camera -> image.
    src = np.array(
        [[ox - 100, oy - 100], [ox + 100, oy - 100], [ox + 100, oy + 100], [ox - 100, oy + 100]],
        np.float64,
    )
    plane = (src - np.array([ox, oy])) * s
    pts3 = np.c_[plane, np.zeros(4)] @ rot.T
    pts3[:, 2] += z0
    dst = np.c_[f * pts3[:, 0] / pts3[:, 2] + cxp, f * pts3[:, 1] / pts3[:, 2] + cyp]
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))


def _finish(scene: np.ndarray, variation: Variation, size: tuple[int, int]) -> np.ndarray:
    """Scene lighting, white balance, blur and noise; returns uint8 BGR."""
    w, h = size
    img = scene
    if variation.gradient > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = math.radians(variation.gradient_deg)
        t = ((xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)) / (0.5 * math.hypot(w, h))
        light = 1.0 - variation.gradient * 0.5 * (1.0 - t)
        img = img * light[..., None]
    wb = np.array([1.0 - variation.color_temp, 1.0, 1.0 + variation.color_temp], np.float32)
    img = img * (variation.gain * wb) + variation.offset
    if variation.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), variation.blur_sigma)
    if variation.noise_std > 0:
        rng = seed_seq("noise", variation.noise_seed)
        img = img + rng.standard_normal(img.shape).astype(np.float32) * variation.noise_std
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = (int(size[0]), int(size[1]))
    if w < 16 or h < 16:
        raise ValueError(f"size={size!r} must be (width, height) of at least 16×16")
    return w, h


def render_hand_and_mask(
    identity: HandIdentity, variation: Variation, size: tuple[int, int] = (640, 480)
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`render_hand`, also returning the hand's coverage (float32 H×W in [0, 1])."""
    w, h = check_size(size)
    # Pick the canvas pyramid level whose palm width is the smallest still >= the target (so
    # the warp only ever downsamples by < 2x, keeping thin creases alias-free).
    level = 0
    while level + 1 < CANVAS_LEVELS and CANVAS_W0 / 2 ** (level + 1) >= variation.palm_width_px:
        level += 1
    canvas = hand_canvas(identity, variation.hand, level)
    hmat = _homography(variation, canvas, (w, h))
    color = cv2.warpPerspective(
        canvas.color, hmat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    alpha = cv2.warpPerspective(
        canvas.alpha, hmat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    bg = _background(variation.background, variation.background_seed, (w, h))
    scene = color * alpha[..., None] + bg * (1.0 - alpha[..., None])
    return _finish(scene, variation, (w, h)), alpha


def render_hand(
    identity: HandIdentity,
    variation: Variation | None = None,
    size: tuple[int, int] = (640, 480),
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Render a BGR uint8 frame of ``identity``'s open hand, palm to the camera.

    :param identity: who.
    :param variation: pose, scale, position, handedness, lighting, blur, noise and background.
        If ``None``, one is drawn with :meth:`Variation.random` from ``rng``.
    :param size: (width, height) of the frame.
    :param rng: only used when ``variation`` is ``None``; a seed or a generator (``None`` = 0).

    The same ``identity`` and ``variation`` always give the identical frame.
    """
    if variation is None:
        variation = Variation.random(rng if rng is not None else 0, size=check_size(size))
    return render_hand_and_mask(identity, variation, size)[0]


def render_no_hand(
    variation: Variation | int = 0, size: tuple[int, int] = (640, 480)
) -> np.ndarray:
    """A frame with only the background (and lighting/noise) of ``variation``.

    An int is taken as a seed for :meth:`Variation.random`, so ``render_no_hand(s)`` has the
    same background as ``render_hand(identity, rng=s)``.
    """
    w, h = check_size(size)
    if not isinstance(variation, Variation):
        variation = Variation.random(int(variation), size=(w, h))
    bg = _background(variation.background, variation.background_seed, (w, h))
    return _finish(bg, variation, (w, h))
