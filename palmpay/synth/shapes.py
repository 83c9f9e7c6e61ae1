"""Hand geometry in canonical coordinates: signed-distance primitives and the hand's parts.

The canonical coordinate system has its origin at the palm centre and the palm width as unit;
+y points from the fingers to the wrist, and a right hand seen palm-on has its thumb at +x.
:func:`hand_parts` lays out the fingers, thumb and forearm of a :class:`HandIdentity` as tapered
capsules; :func:`grid` samples the canvas area (:data:`CANVAS_X` × :data:`CANVAS_Y`) at a
given scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from palmpay.synth.identity import FINGER_NOMINAL, FINGERS, HandIdentity

__all__ = [
    "CANVAS_X", "CANVAS_Y", "Part", "bezier", "box_sdf", "capsule_height", "ellipse_sdf",
    "grid", "hand_parts", "segment_dist", "smin", "smoothstep", "to_px",
]


# Canvas geometry, in palm widths around the palm centre: wide enough for the thumb and the
# spread little finger (symmetric, so a left hand is the flipped canvas), tall enough for the
# fingertips. Only the forearm touches the canvas border (the bottom one); the warp replicates
# the border, so the forearm continues as a straight band out of any frame.
CANVAS_X = (-1.35, 1.35)
CANVAS_Y = (-1.75, 1.6)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def segment_dist(
    px: np.ndarray, py: np.ndarray, a: tuple[float, float], b: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points to segment a-b and the clamped parameter t in [0, 1]."""
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    ll = dx * dx + dy * dy
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / ll, 0.0, 1.0)
    qx = ax + t * dx - px
    qy = ay + t * dy - py
    return np.sqrt(qx * qx + qy * qy), t


def capsule_height(
    px: np.ndarray,
    py: np.ndarray,
    a: tuple[float, float],
    b: tuple[float, float],
    r0: float,
    r1: float,
) -> np.ndarray:
    """Height of a tapered cylinder with hemispherical-ish ends (radius r0 at a, r1 at b);
    ``<0`` outside (a signed-distance-like value, negated)."""
    d, t = segment_dist(px, py, a, b)
    r = r0 + (r1 - r0) * t
    inside = r * r - d * d
    return np.where(inside > 0, np.sqrt(np.maximum(inside, 0.0)), -(d - r))


def box_sdf(
    px: np.ndarray, py: np.ndarray, cx: float, cy: float, hx: float, hy: float, rad: float
) -> np.ndarray:
    """Signed distance to a rounded rectangle (negative inside)."""
    qx = np.abs(px - cx) - (hx - rad)
    qy = np.abs(py - cy) - (hy - rad)
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    inside = np.minimum(np.maximum(qx, qy), 0.0)
    return outside + inside - rad


def ellipse_sdf(
    px: np.ndarray, py: np.ndarray, cx: float, cy: float, rx: float, ry: float, ang: float
) -> np.ndarray:
    """Approximate signed distance to a rotated ellipse (negative inside)."""
    c, s = math.cos(ang), math.sin(ang)
    x = (px - cx) * c + (py - cy) * s
    y = -(px - cx) * s + (py - cy) * c
    k = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    return (k - 1.0) * min(rx, ry)


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (union of SDFs with a fillet of size ``k``)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def bezier(points: np.ndarray, n: int = 64) -> np.ndarray:
    """Sample a Bezier curve (any degree) through control ``points`` (k×2) at ``n`` points."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    # de Casteljau, vectorised over t
    p = np.repeat(points[None, :, :].astype(np.float64), n, axis=0)
    while p.shape[1] > 1:
        p = p[:, :-1] * (1 - t[:, :, None]) + p[:, 1:] * t[:, :, None]
    return p[:, 0]


@dataclass(frozen=True)
class Part:
    name: str
    a: tuple[float, float]
    b: tuple[float, float]
    r0: float
    r1: float


def hand_parts(identity: HandIdentity) -> list[Part]:
    parts = []
    for i, name in enumerate(FINGERS):
        (bx, by), _, _, _ = FINGER_NOMINAL[name]
        ang = math.radians(identity.finger_angles[i])
        length = identity.finger_lengths[i]
        w = identity.finger_widths[i]
        # The finger's root starts a bit inside the palm so the union is seamless.
        root = (bx - 0.10 * math.sin(ang), by + 0.10 * math.cos(ang))
        tip = (bx + length * math.sin(ang), by - length * math.cos(ang))
        # The tip point is the centre of the rounded end: pull it back by the tip radius.
        r1 = 0.5 * w * 0.82
        tip = (tip[0] - r1 * math.sin(ang), tip[1] + r1 * math.cos(ang))
        parts.append(Part(name, root, tip, 0.5 * w, r1))
    ta = math.radians(identity.thumb_angle)
    troot = (0.30, 0.28)
    tl = identity.thumb_length
    # Thumb: a metacarpal segment (wide, mostly merged with the thenar) + the free thumb that
    # bends slightly towards the fingers.
    mid = (troot[0] + 0.45 * tl * math.sin(ta), troot[1] - 0.45 * tl * math.cos(ta))
    ta2 = ta - math.radians(12.0)
    r1 = 0.105
    tip = (mid[0] + (0.55 * tl - r1) * math.sin(ta2), mid[1] - (0.55 * tl - r1) * math.cos(ta2))
    parts.append(Part("thumb_meta", troot, mid, 0.17, 0.135))
    parts.append(Part("thumb", mid, tip, 0.135, r1))
    parts.append(Part("forearm", (0.0, 0.55), (0.0, 4.8), 0.40, 0.50))
    return parts


def grid(scale: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[int, int]]:
    x0, x1 = CANVAS_X
    y0, y1 = CANVAS_Y
    w = int(round((x1 - x0) * scale))
    h = int(round((y1 - y0) * scale))
    xs = (np.arange(w, dtype=np.float32) + 0.5) / scale + x0
    ys = (np.arange(h, dtype=np.float32) + 0.5) / scale + y0
    px, py = np.meshgrid(xs, ys)
    origin = (-x0 * scale, -y0 * scale)
    return px, py, origin, (w, h)


def to_px(pts: np.ndarray, scale: float, origin: tuple[float, float]) -> np.ndarray:
    return pts * scale + np.array(origin)
