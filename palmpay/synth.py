"""Deterministic synthetic hands, frames and videos for tests and the demo.

Real palm datasets cannot be shipped, so everything that needs a "camera image of a hand" — unit
tests, end-to-end tests, the demo clip, the fake camera for the browser — is rendered here from an
integer seed. Nothing in this module is random unless a seed says so: the same seed (and the same
:class:`Variation`) always gives bit-identical frames.

Model
-----
A :class:`HandIdentity` is a person: hand proportions (palm width to finger lengths, finger
spread, thumb angle), skin tone, and — per hand — a palm-print pattern: the three principal lines
(heart, head, life) as smooth random curves, a few minor lines and a couple of hundred fine
creases laid out along an identity-specific orientation field. As in biometric datasets, each
``(identity, hand)`` pair is its own palm: the left palm print is *not* the mirror of the right
one (real people's are not either), but the left *hand* is rendered geometrically correct, as the
mirror image of the right hand (a left palm seen by a camera is the mirror image of a right palm),
so with equal proportions a left hand's silhouette is exactly the flipped right one.

A hand is rendered once per identity and hand into a canonical, upright "canvas" (colour + alpha,
a 2.5-D height field shaded by a directional light, finger-joint creases, skin mottling and the
palm print) and cached; a :class:`Variation` then places that canvas in the frame with a
perspective warp (in-plane rotation, optional out-of-plane tilt, scale, position) over a
background, and applies scene lighting, blur and sensor noise.

The canonical coordinate system has its origin at the palm centre and the palm width as unit; +y
points from the fingers to the wrist. For a right hand seen palm-on the thumb is at +x (image
right), fingers at -y.

Entry points: :func:`render_hand`, :func:`render_no_hand`, :func:`presentation_frames`,
:func:`demo_clip`, :func:`write_video`, :func:`write_y4m`, :func:`write_gallery`, and the
command line ``python -m palmpay.synth {gallery,video,frame} ...``.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "BACKGROUNDS",
    "HANDS",
    "HandIdentity",
    "Variation",
    "VariationRanges",
    "TEST_RANGES",
    "render_hand",
    "render_hand_and_mask",
    "render_no_hand",
    "palm_id",
    "presentation_frames",
    "demo_clip",
    "write_video",
    "write_y4m",
    "write_gallery",
    "main",
]

log = logging.getLogger(__name__)

#: Handedness values of :attr:`Variation.hand`.
HANDS = ("right", "left")
#: Background kinds of :attr:`Variation.background`.
BACKGROUNDS = ("dark", "textured", "bright")

# Canvas geometry, in palm widths around the palm centre: wide enough for the thumb and the
# spread little finger (symmetric, so a left hand is the flipped canvas), tall enough for the
# fingertips. Only the forearm touches the canvas border (the bottom one); the warp replicates
# the border, so the forearm continues as a straight band out of any frame.
_CANVAS_X = (-1.35, 1.35)
_CANVAS_Y = (-1.75, 1.6)
# Palm width of the canvas, in pixels, at pyramid level 0. Lower levels halve it.
_CANVAS_W0 = 320
_CANVAS_LEVELS = 3

# Finger order for a right hand, from image left to image right (palm-on): little .. index.
_FINGERS = ("little", "ring", "middle", "index")
# Nominal finger base (x, y), width, length (all in palm widths) and spread angle (degrees from
# straight up, positive = towards +x / the thumb).
_FINGER_NOMINAL = {
    "little": ((-0.37, -0.36), 0.20, 0.66, -17.0),
    "ring": ((-0.13, -0.47), 0.225, 0.82, -6.0),
    "middle": ((0.11, -0.50), 0.235, 0.88, 2.0),
    "index": ((0.35, -0.45), 0.23, 0.80, 11.0),
}


# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------


def _seed_seq(*parts: int | str) -> np.random.Generator:
    """A generator seeded from a tuple of ints/strings (stable across runs and platforms)."""
    ints = []
    for p in parts:
        if isinstance(p, str):
            ints.extend(p.encode("utf-8"))
            ints.append(0xFFFF)
        else:
            ints.append(int(p) & 0xFFFFFFFF)
    return np.random.default_rng(np.random.SeedSequence(ints))


@dataclass(frozen=True)
class HandIdentity:
    """A synthetic person, generated from ``seed`` by :meth:`from_seed`.

    Attributes:
        seed: the integer the identity was generated from; also the name of its palms.
        skin_bgr: base palm skin colour (BGR, 0-255 floats). Palms are lighter than the backs of
            hands; tones range from dark brown to pale.
        finger_lengths: little, ring, middle, index finger lengths beyond the palm, in palm widths.
        finger_widths: the same fingers' widths at the base, in palm widths.
        finger_angles: spread of each finger, degrees from straight up (+ = towards the thumb).
        thumb_angle: thumb direction, degrees from straight up towards +x (the thumb side).
        thumb_length: thumb length from its root in the thenar, in palm widths.
        palm_length: wrist crease to finger-base crease, in palm widths.
        line_strength: darkness of the palm creases (0-1 multiplier on the skin).
    """

    seed: int
    skin_bgr: tuple[float, float, float]
    finger_lengths: tuple[float, float, float, float]
    finger_widths: tuple[float, float, float, float]
    finger_angles: tuple[float, float, float, float]
    thumb_angle: float
    thumb_length: float
    palm_length: float
    line_strength: float

    @classmethod
    def from_seed(cls, seed: int) -> HandIdentity:
        """Draw proportions and skin tone from ``seed`` (the palm print is drawn per hand later)."""
        rng = _seed_seq("identity", seed)
        # Skin: interpolate dark -> light palm colours, small hue/saturation jitter.
        t = float(rng.uniform(0.0, 1.0))
        dark = np.array([62.0, 92.0, 150.0])
        light = np.array([150.0, 176.0, 236.0])
        skin = dark + t * (light - dark)
        skin = skin * (1.0 + rng.normal(0.0, 0.03, 3))
        skin[0] *= float(rng.uniform(0.92, 1.05))  # a little more/less blue = redder/yellower
        lengths = []
        widths = []
        angles = []
        scale_len = float(rng.normal(1.0, 0.05))
        for name in _FINGERS:
            _, w, ln, a = _FINGER_NOMINAL[name]
            lengths.append(float(ln * scale_len * rng.normal(1.0, 0.03)))
            widths.append(float(w * rng.normal(1.0, 0.04)))
            angles.append(float(a * rng.uniform(0.8, 1.3) + rng.normal(0.0, 1.5)))
        return cls(
            seed=int(seed),
            skin_bgr=tuple(float(v) for v in np.clip(skin, 40, 250)),
            finger_lengths=tuple(lengths),
            finger_widths=tuple(widths),
            finger_angles=tuple(angles),
            thumb_angle=float(rng.uniform(42.0, 58.0)),
            thumb_length=float(rng.normal(0.95, 0.04)),
            palm_length=float(rng.normal(1.08, 0.03)),
            line_strength=float(rng.uniform(0.32, 0.48)),
        )


def palm_id(identity: HandIdentity | int, hand: str = "right") -> str:
    """The name of a palm, ``"<seed:05d>-<hand>"``: the gallery folder name used by
    :func:`write_gallery` (every ``(identity, hand)`` is a distinct palm)."""
    seed = identity.seed if isinstance(identity, HandIdentity) else int(identity)
    _check_hand(hand)
    return f"{seed:05d}-{hand}"


def _check_hand(hand: str) -> None:
    if hand not in HANDS:
        raise ValueError(f"hand={hand!r} must be one of {HANDS}")


# --------------------------------------------------------------------------------------------
# Variations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variation:
    """How one frame shows a hand.

    Attributes:
        rotation_deg: in-plane rotation, degrees counter-clockwise in the image (0 = fingers up).
        tilt_x_deg: out-of-plane pitch (fingers towards/away from the camera); keep within ±20.
        tilt_y_deg: out-of-plane yaw (thumb side towards/away from the camera); keep within ±20.
        palm_width_px: palm width (across the palm, below the fingers) in frame pixels.
        center: palm centre as a fraction of the frame (x from the left, y from the top).
        hand: ``"right"`` or ``"left"``; a left hand is rendered as the mirror image.
        gain: multiplies the whole scene (exposure / light intensity).
        offset: added to the whole scene after ``gain`` (grey levels; negative = darker).
        gradient: strength of a linear light fall-off across the frame (0 = none, 0.5 = the dark
            side gets half the light of the bright side).
        gradient_deg: direction the light gets brighter towards, degrees (0 = towards +x).
        color_temp: white-balance shift; >0 warmer (more red, less blue), <0 cooler.
        blur_sigma: Gaussian blur sigma in pixels (defocus); 0 = none.
        noise_std: std of additive Gaussian sensor noise in grey levels; 0 = none.
        background: ``"dark"``, ``"textured"`` or ``"bright"``.
        background_seed: seed of the background's pattern and colour.
        noise_seed: seed of the sensor noise (vary it per frame of a video).
    """

    rotation_deg: float = 0.0
    tilt_x_deg: float = 0.0
    tilt_y_deg: float = 0.0
    palm_width_px: float = 180.0
    center: tuple[float, float] = (0.5, 0.6)
    hand: str = "right"
    gain: float = 1.0
    offset: float = 0.0
    gradient: float = 0.0
    gradient_deg: float = 0.0
    color_temp: float = 0.0
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    background: str = "dark"
    background_seed: int = 0
    noise_seed: int = 0

    def __post_init__(self) -> None:
        _check_hand(self.hand)
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background={self.background!r} must be one of {BACKGROUNDS}")
        if not self.palm_width_px > 0:
            raise ValueError(f"palm_width_px={self.palm_width_px} must be > 0")

    @classmethod
    def random(
        cls,
        rng: np.random.Generator | int,
        ranges: VariationRanges | None = None,
        size: tuple[int, int] = (640, 480),
        hand: str | None = None,
    ) -> Variation:
        """Sample a variation uniformly within ``ranges`` (default :data:`TEST_RANGES`).

        The palm centre is sampled so that the whole hand (fingertips included) stays in a
        ``size`` frame where the palm width allows it, and the forearm leaves the bottom edge.
        ``hand`` fixes the handedness; otherwise it is drawn with ``ranges.left_fraction``.
        """
        r = ranges or TEST_RANGES
        g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        w_img, h_img = size
        pw = float(g.uniform(*r.palm_width_px))
        rot = float(g.uniform(-r.rotation_deg, r.rotation_deg))
        # Hand extent above/below the palm centre and to the sides, rotated.
        up = 1.45 * pw  # middle fingertip above the palm centre
        cx_lo, cx_hi = r.center_x
        margin_x = 0.85 * pw * abs(math.cos(math.radians(rot))) + up * abs(
            math.sin(math.radians(rot))
        )
        lo = max(cx_lo * w_img, margin_x)
        hi = min(cx_hi * w_img, w_img - margin_x)
        cx = float(g.uniform(lo, hi)) if hi > lo else w_img / 2.0
        # Vertical fit: the wrist must stay in the frame (the palm detector needs it); the
        # fingertips too if the palm is small enough, otherwise they are cut at the top.
        cos_r, sin_r = abs(math.cos(math.radians(rot))), abs(math.sin(math.radians(rot)))
        top_needed = up * cos_r + 0.3 * pw * sin_r + 6.0
        cy_max = h_img - 0.62 * pw * cos_r - 4.0
        cy_lo = max(r.center_y[0] * h_img, top_needed)
        cy_hi = min(r.center_y[1] * h_img, cy_max)
        cy = cy_max if cy_lo >= cy_max else float(g.uniform(cy_lo, max(cy_lo, cy_hi)))
        if hand is None:
            hand = "left" if g.uniform() < r.left_fraction else "right"
        return cls(
            rotation_deg=rot,
            tilt_x_deg=float(g.uniform(-r.tilt_deg, r.tilt_deg)),
            tilt_y_deg=float(g.uniform(-r.tilt_deg, r.tilt_deg)),
            palm_width_px=pw,
            center=(cx / w_img, cy / h_img),
            hand=hand,
            gain=float(g.uniform(*r.gain)),
            offset=float(g.uniform(*r.offset)),
            gradient=float(g.uniform(0.0, r.gradient)),
            gradient_deg=float(g.uniform(0.0, 360.0)),
            color_temp=float(g.uniform(-r.color_temp, r.color_temp)),
            blur_sigma=float(g.uniform(*r.blur_sigma)),
            noise_std=float(g.uniform(*r.noise_std)),
            background=str(g.choice(r.backgrounds)),
            background_seed=int(g.integers(0, 2**31)),
            noise_seed=int(g.integers(0, 2**31)),
        )


@dataclass(frozen=True)
class VariationRanges:
    """Ranges :meth:`Variation.random` samples from (uniformly; ± values are symmetric).

    The defaults (:data:`TEST_RANGES`) are the ranges the detection tests promise to handle:
    in-plane rotation ±20°, palm width 120-240 px in a 640×480 frame, moderate tilt, lighting,
    blur and noise.
    """

    rotation_deg: float = 20.0
    tilt_deg: float = 10.0
    palm_width_px: tuple[float, float] = (120.0, 240.0)
    center_x: tuple[float, float] = (0.3, 0.7)
    center_y: tuple[float, float] = (0.5, 0.75)
    gain: tuple[float, float] = (0.75, 1.2)
    offset: tuple[float, float] = (-15.0, 15.0)
    gradient: float = 0.35
    color_temp: float = 0.08
    blur_sigma: tuple[float, float] = (0.0, 1.5)
    noise_std: tuple[float, float] = (0.0, 6.0)
    backgrounds: tuple[str, ...] = BACKGROUNDS
    left_fraction: float = 0.0


TEST_RANGES = VariationRanges()


# --------------------------------------------------------------------------------------------
# Canonical hand canvas
# --------------------------------------------------------------------------------------------


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _segment_dist(
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


def _capsule_height(
    px: np.ndarray,
    py: np.ndarray,
    a: tuple[float, float],
    b: tuple[float, float],
    r0: float,
    r1: float,
) -> np.ndarray:
    """Height of a tapered cylinder with hemispherical-ish ends (radius r0 at a, r1 at b);
    ``<0`` outside (a signed-distance-like value, negated)."""
    d, t = _segment_dist(px, py, a, b)
    r = r0 + (r1 - r0) * t
    inside = r * r - d * d
    return np.where(inside > 0, np.sqrt(np.maximum(inside, 0.0)), -(d - r))


def _box_sdf(
    px: np.ndarray, py: np.ndarray, cx: float, cy: float, hx: float, hy: float, rad: float
) -> np.ndarray:
    """Signed distance to a rounded rectangle (negative inside)."""
    qx = np.abs(px - cx) - (hx - rad)
    qy = np.abs(py - cy) - (hy - rad)
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    inside = np.minimum(np.maximum(qx, qy), 0.0)
    return outside + inside - rad


def _ellipse_sdf(
    px: np.ndarray, py: np.ndarray, cx: float, cy: float, rx: float, ry: float, ang: float
) -> np.ndarray:
    """Approximate signed distance to a rotated ellipse (negative inside)."""
    c, s = math.cos(ang), math.sin(ang)
    x = (px - cx) * c + (py - cy) * s
    y = -(px - cx) * s + (py - cy) * c
    k = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    return (k - 1.0) * min(rx, ry)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (union of SDFs with a fillet of size ``k``)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _bezier(points: np.ndarray, n: int = 64) -> np.ndarray:
    """Sample a Bezier curve (any degree) through control ``points`` (k×2) at ``n`` points."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    # de Casteljau, vectorised over t
    p = np.repeat(points[None, :, :].astype(np.float64), n, axis=0)
    while p.shape[1] > 1:
        p = p[:, :-1] * (1 - t[:, :, None]) + p[:, 1:] * t[:, :, None]
    return p[:, 0]


@dataclass(frozen=True)
class _Canvas:
    color: np.ndarray  # float32 H×W×3, premultiplied-free skin colour (BGR, 0-255)
    alpha: np.ndarray  # float32 H×W in [0, 1]
    scale: float  # pixels per palm width
    origin: tuple[float, float]  # pixel position of the palm centre


@dataclass(frozen=True)
class _Part:
    name: str
    a: tuple[float, float]
    b: tuple[float, float]
    r0: float
    r1: float


def _hand_parts(identity: HandIdentity) -> list[_Part]:
    parts = []
    for i, name in enumerate(_FINGERS):
        (bx, by), _, _, _ = _FINGER_NOMINAL[name]
        ang = math.radians(identity.finger_angles[i])
        length = identity.finger_lengths[i]
        w = identity.finger_widths[i]
        # The finger's root starts a bit inside the palm so the union is seamless.
        root = (bx - 0.10 * math.sin(ang), by + 0.10 * math.cos(ang))
        tip = (bx + length * math.sin(ang), by - length * math.cos(ang))
        # The tip point is the centre of the rounded end: pull it back by the tip radius.
        r1 = 0.5 * w * 0.82
        tip = (tip[0] - r1 * math.sin(ang), tip[1] + r1 * math.cos(ang))
        parts.append(_Part(name, root, tip, 0.5 * w, r1))
    ta = math.radians(identity.thumb_angle)
    troot = (0.30, 0.28)
    tl = identity.thumb_length
    # Thumb: a metacarpal segment (wide, mostly merged with the thenar) + the free thumb that
    # bends slightly towards the fingers.
    mid = (troot[0] + 0.45 * tl * math.sin(ta), troot[1] - 0.45 * tl * math.cos(ta))
    ta2 = ta - math.radians(12.0)
    r1 = 0.105
    tip = (mid[0] + (0.55 * tl - r1) * math.sin(ta2), mid[1] - (0.55 * tl - r1) * math.cos(ta2))
    parts.append(_Part("thumb_meta", troot, mid, 0.17, 0.135))
    parts.append(_Part("thumb", mid, tip, 0.135, r1))
    parts.append(_Part("forearm", (0.0, 0.55), (0.0, 4.8), 0.40, 0.50))
    return parts


def _grid(scale: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[int, int]]:
    x0, x1 = _CANVAS_X
    y0, y1 = _CANVAS_Y
    w = int(round((x1 - x0) * scale))
    h = int(round((y1 - y0) * scale))
    xs = (np.arange(w, dtype=np.float32) + 0.5) / scale + x0
    ys = (np.arange(h, dtype=np.float32) + 0.5) / scale + y0
    px, py = np.meshgrid(xs, ys)
    origin = (-x0 * scale, -y0 * scale)
    return px, py, origin, (w, h)


def _to_px(pts: np.ndarray, scale: float, origin: tuple[float, float]) -> np.ndarray:
    return pts * scale + np.array(origin)


def _palm_print(
    identity: HandIdentity,
    hand: str,
    scale: float,
    origin: tuple[float, float],
    size: tuple[int, int],
) -> np.ndarray:
    """Crease map (float32, 0..1) of the palm print of ``(identity, hand)`` in canvas pixels.

    Drawn in *right-hand* canonical coordinates; the caller mirrors the whole canvas for a left
    hand. Principal lines are ~1.6 % of the palm width thick, minor lines and creases thinner.
    """
    rng = _seed_seq("palmprint", identity.seed, hand)
    w, h = size
    crease = np.zeros((h, w), np.float32)
    shift = 8  # sub-pixel precision for cv2 drawing
    mul = float(1 << shift)

    def draw(curve: np.ndarray, thick_w: float, strength: float, taper: bool = True) -> None:
        pts = np.round(_to_px(curve, scale, origin) * mul).astype(np.int32)
        if not taper:
            th = max(1, int(round(thick_w * scale)))
            cv2.polylines(crease, [pts], False, float(strength), th, cv2.LINE_AA, shift)
            return
        # Segment by segment so thickness and strength taper towards both ends.
        n = len(pts)
        k = np.sqrt(np.sin(np.pi * np.arange(n - 1) / max(n - 2, 1)))
        ths = np.maximum(1, np.round(thick_w * scale * (0.45 + 0.55 * k))).astype(int).tolist()
        vals = (strength * (0.5 + 0.5 * k)).tolist()
        p = pts.tolist()
        for i in range(n - 1):
            cv2.line(crease, p[i], p[i + 1], vals[i], ths[i], cv2.LINE_AA, shift)

    def jit(p: Sequence[float], s: float) -> list[float]:
        return [p[0] + float(rng.normal(0, s)), p[1] + float(rng.normal(0, s))]

    # Heart line: little-finger edge of the palm, curving up between middle and index finger.
    heart = np.array(
        [
            jit((-0.52, -0.20), 0.04),
            jit((-0.20, -0.26), 0.05),
            jit((0.05, -0.30), 0.06),
            jit((0.22, -0.40), 0.05),
        ]
    )
    # Head line: from the thumb-index web across the palm, gently falling.
    head = np.array(
        [
            jit((0.47, -0.22), 0.03),
            jit((0.20, -0.13), 0.05),
            jit((-0.10, -0.05), 0.06),
            jit((-0.42, 0.10), 0.07),
        ]
    )
    # Life line: from the same web, arcing around the thenar to the wrist.
    life = np.array(
        [
            jit((0.46, -0.20), 0.03),
            jit((0.12, -0.02), 0.05),
            jit((0.06, 0.30), 0.05),
            jit((0.22, 0.56), 0.04),
        ]
    )
    base_th = 0.016 * float(rng.uniform(0.85, 1.2))
    for curve in (heart, head, life):
        draw(_bezier(curve, 48), base_th * float(rng.uniform(0.9, 1.2)), 1.0)
    # Minor lines: fate line (vertical, centre), sun/health lines, a simian-ish branch sometimes.
    n_minor = int(rng.integers(3, 7))
    for _ in range(n_minor):
        x = float(rng.uniform(-0.35, 0.3))
        y0 = float(rng.uniform(0.05, 0.5))
        length = float(rng.uniform(0.2, 0.55))
        ang = float(rng.normal(0.0, 0.35))
        p0 = (x, y0)
        p2 = (x + length * math.sin(ang), y0 - length * math.cos(ang))
        p1 = (
            0.5 * (p0[0] + p2[0]) + float(rng.normal(0, 0.05)),
            0.5 * (p0[1] + p2[1]) + float(rng.normal(0, 0.05)),
        )
        draw(_bezier(np.array([p0, p1, p2]), 24), base_th * 0.6, float(rng.uniform(0.45, 0.8)))
    # Fine creases: oriented along a smooth identity-specific field, dense over the palm.
    # Orientation field: a few random low-frequency harmonics.
    coef = rng.normal(0.0, 1.0, (4, 3))
    n_fine = int(rng.integers(170, 230))
    for _ in range(n_fine):
        cx = float(rng.uniform(-0.48, 0.48))
        cy = float(rng.uniform(-0.40, 0.55))
        theta = (
            coef[0, 0] * math.sin(2.1 * cx + coef[0, 1])
            + coef[1, 0] * math.cos(2.7 * cy + coef[1, 1])
            + coef[2, 0] * math.sin(3.3 * (cx + cy) + coef[2, 1])
        ) + float(rng.normal(0.0, 0.45))
        length = float(rng.uniform(0.04, 0.16))
        dx, dy = math.cos(theta) * length / 2, math.sin(theta) * length / 2
        bend = float(rng.normal(0.0, 0.02))
        pts = np.array(
            [
                [cx - dx, cy - dy],
                [cx - bend * dy / max(length, 1e-6) * 2, cy + bend * dx],
                [cx + dx, cy + dy],
            ]
        )
        draw(_bezier(pts, 6), 0.0065, float(rng.uniform(0.25, 0.6)), taper=False)
    # Wrist creases (bracelets).
    for k in range(2):
        y = 0.60 + 0.05 * k + float(rng.normal(0, 0.01))
        wave = float(rng.normal(0, 0.02))
        curve = np.array([[-0.36, y], [0.0, y + 0.03 + wave], [0.36, y]])
        draw(_bezier(curve, 24), 0.010, 0.7)
    return crease


def _finger_creases(
    identity: HandIdentity,
    parts: list[_Part],
    scale: float,
    origin: tuple[float, float],
    size: tuple[int, int],
) -> np.ndarray:
    """Flexion creases across the fingers (base, middle and distal joints) and the thumb."""
    rng = _seed_seq("fingercreases", identity.seed)
    w, h = size
    crease = np.zeros((h, w), np.float32)
    shift = 8
    mul = float(1 << shift)
    for part in parts:
        if part.name in ("forearm", "thumb_meta"):
            continue
        ax, ay = part.a
        bx, by = part.b
        dx, dy = bx - ax, by - ay
        ln = math.hypot(dx, dy)
        ux, uy = dx / ln, dy / ln
        nx, ny = -uy, ux
        # Fingers, from the root (inside the palm): base crease where the finger leaves the
        # palm, PIP at ~55 %, DIP at ~80 % of the length; the thumb has one (IP) crease.
        positions = [0.45] if part.name == "thumb" else [0.16, 0.55, 0.80]
        for j, f in enumerate(positions):
            f = f + float(rng.normal(0, 0.015))
            cxp, cyp = ax + f * dx, ay + f * dy
            r = part.r0 + (part.r1 - part.r0) * f
            for k in range(2 if j > 0 else 1):
                off = (k - 0.5) * 0.022 if j > 0 else 0.0
                bow = 0.03 * (1 if part.name != "thumb" else 0.5)
                p0 = (cxp - 0.85 * r * nx + off * ux, cyp - 0.85 * r * ny + off * uy)
                p2 = (cxp + 0.85 * r * nx + off * ux, cyp + 0.85 * r * ny + off * uy)
                p1 = (cxp + (bow + off) * ux, cyp + (bow + off) * uy)
                pts = _to_px(_bezier(np.array([p0, p1, p2]), 16), scale, origin)
                cv2.polylines(
                    crease,
                    [np.round(pts * mul).astype(np.int32)],
                    False,
                    float(rng.uniform(0.6, 0.9)),
                    max(1, int(round(0.012 * scale))),
                    cv2.LINE_AA,
                    shift,
                )
    return crease


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide kernels are applied at a reduced resolution (same look, far faster)."""
    if sigma <= 0:
        return img
    if sigma < 4.0:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    f = sigma / 2.0
    h, w = img.shape[:2]
    small = cv2.resize(
        img, (max(2, int(round(w / f))), max(2, int(round(h / f)))), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), 2.0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _canon_noise(rng: np.random.Generator, shape: tuple[int, int], per_palm: float) -> np.ndarray:
    """Unit-std smooth noise on a grid of ``per_palm`` cells per palm width over the canvas,
    resized to ``shape``: the same pattern at every canvas resolution."""
    gw = int(math.ceil((_CANVAS_X[1] - _CANVAS_X[0]) * per_palm)) + 2
    gh = int(math.ceil((_CANVAS_Y[1] - _CANVAS_Y[0]) * per_palm)) + 2
    small = cv2.GaussianBlur(rng.standard_normal((gh, gw)).astype(np.float32), (0, 0), 1.0)
    n = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    s = float(n.std())
    return n / s if s > 0 else n


def _noise_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-std Gaussian-filtered white noise (generated at low resolution for wide ``sigma``)."""
    h, w = shape
    if sigma >= 4.0:
        f = sigma / 1.5
        small = rng.standard_normal(
            (max(2, int(math.ceil(h / f)) + 1), max(2, int(math.ceil(w / f)) + 1))
        ).astype(np.float32)
        small = cv2.GaussianBlur(small, (0, 0), 1.5)
        n = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        n = rng.standard_normal(shape).astype(np.float32)
        if sigma > 0:
            n = cv2.GaussianBlur(n, (0, 0), sigma)
    s = float(n.std())
    return n / s if s > 0 else n


@lru_cache(maxsize=12)  # up to ~15 MB each at level 0
def _canvas(identity: HandIdentity, hand: str, level: int) -> _Canvas:
    """Render the canonical canvas of ``(identity, hand)`` at palm width ``_CANVAS_W0 / 2**level``.

    Every level is rendered directly (not downsampled), with all random texture drawn on grids
    fixed in palm-width units, so the levels differ only in resolution.
    """
    scale = float(_CANVAS_W0) / 2**level
    px, py, origin, size = _grid(scale)
    parts = _hand_parts(identity)

    # --- Height field: union of palm (rounded box + thenar/hypothenar bulges) and capsules.
    pl = identity.palm_length
    top, bottom = -0.52, -0.52 + pl
    palm_sdf = _box_sdf(px, py, 0.0, 0.5 * (top + bottom), 0.5, 0.5 * pl, 0.26)
    thenar = _ellipse_sdf(px, py, 0.24, 0.22, 0.26, 0.36, math.radians(-25.0))
    hypo = _ellipse_sdf(px, py, -0.30, 0.15, 0.22, 0.36, math.radians(8.0))
    palm_sdf = _smin(_smin(palm_sdf, thenar, 0.08), hypo, 0.06)
    palm_depth = np.clip(-palm_sdf, 0.0, None)
    edge_r = 0.14
    palm_h = np.where(
        palm_sdf < 0,
        0.12
        + 0.16 * np.sqrt(np.clip(1.0 - (1.0 - np.minimum(palm_depth / edge_r, 1.0)) ** 2, 0, 1)),
        -palm_sdf,
    )
    # Muscle bulges (thenar/hypothenar higher, palm hollow in the middle).
    bulge = 0.05 * np.exp(-(((px - 0.24) / 0.2) ** 2 + ((py - 0.24) / 0.28) ** 2))
    bulge += 0.035 * np.exp(-(((px + 0.3) / 0.16) ** 2 + ((py - 0.2) / 0.3) ** 2))
    bulge += 0.03 * np.exp(-(((px) / 0.45) ** 2 + ((py + 0.42) / 0.09) ** 2))  # finger-base pads
    bulge -= 0.03 * np.exp(-(((px + 0.02) / 0.22) ** 2 + ((py - 0.02) / 0.22) ** 2))
    palm_h = np.where(palm_sdf < 0, palm_h + bulge, palm_h)

    height = palm_h.astype(np.float32)
    for part in parts:
        hp = _capsule_height(px, py, part.a, part.b, part.r0, part.r1)
        if part.name == "forearm":
            hp = np.where(hp > 0, 0.6 * hp + 0.02, hp)
        else:
            hp = np.where(hp > 0, 0.12 + 0.9 * hp, hp)
        height = np.maximum(height, hp.astype(np.float32))
    # Signed "inside" measure: >0 inside the hand. Anti-aliased alpha over ~1 px.
    alpha = np.clip(height * scale + 0.5, 0.0, 1.0).astype(np.float32)
    h_in = np.maximum(height, 0.0).astype(np.float32)
    # Finger-joint dips: creases are slight grooves in the height field too.
    fcrease = _finger_creases(identity, parts, scale, origin, size)
    fcrease = cv2.GaussianBlur(fcrease, (0, 0), 0.8)
    h_in = h_in - 0.012 * _blur(fcrease, 0.02 * scale)
    # Soften the union seams a little.
    h_s = cv2.GaussianBlur(h_in, (0, 0), 0.012 * scale)

    # --- Shading: Lambert with a light from the upper left front + ambient occlusion.
    gy, gx = np.gradient(h_s * scale, edge_order=1)  # dimensionless slopes (height in px)
    gx = gx.astype(np.float32)
    gy = gy.astype(np.float32)
    norm = np.sqrt(gx * gx + gy * gy + 1.0)
    lx, ly, lz = -0.35, -0.45, 0.82
    ln = math.sqrt(lx * lx + ly * ly + lz * lz)
    diffuse = np.clip((-gx * lx - gy * ly + lz) / (norm * ln), 0.0, 1.0)
    ao = np.clip(_blur(h_s, 0.06 * scale) - h_s, 0.0, None) * 6.0
    ao = np.clip(ao, 0.0, 0.45)
    shade = (0.30 + 0.80 * diffuse) * (1.0 - ao)
    # Soft specular sheen on the pads.
    rz = 2 * diffuse * (1.0 / norm) - lz / ln
    spec = np.clip(rz, 0.0, 1.0) ** 12 * 0.10

    # --- Albedo: skin colour, mottling, redder creases and finger tips, palm print.
    rng = _seed_seq("skin", identity.seed, hand)
    skin = np.array(identity.skin_bgr, np.float32)
    h, w = px.shape
    mott = _canon_noise(rng, (h, w), 12.0) * 0.045
    mott2 = _canon_noise(rng, (h, w), 60.0) * 0.03
    fine = _noise_field(rng, (h, w), 0.7) * 0.025  # per-pixel skin grain, not identity-specific
    albedo = skin[None, None, :] * (1.0 + mott + mott2 + fine)[..., None]
    # Redder (more blood) at fingertips and thenar, slightly yellower centre.
    red = np.zeros((h, w), np.float32)
    for part in parts:
        if part.name in ("forearm", "thumb_meta"):
            continue
        d, t = _segment_dist(px, py, part.a, part.b)
        red += np.exp(-(((1.0 - t) / 0.25) ** 2)) * (d < part.r0) * 0.6
    red += 0.4 * np.exp(-(((px - 0.24) / 0.2) ** 2 + ((py - 0.24) / 0.28) ** 2))
    red = _blur(red, 0.03 * scale)
    albedo = albedo * (1.0 + red[..., None] * np.array([-0.10, -0.06, 0.03], np.float32))

    print_map = _palm_print(identity, "right" if hand == "right" else "left", scale, origin, size)
    print_map = cv2.GaussianBlur(print_map, (0, 0), 0.6)
    # Palm print only on the palm (fades out at the palm edge and into the fingers).
    palm_mask = _smoothstep(-palm_sdf / 0.05).astype(np.float32)
    creases = np.clip(print_map * palm_mask + fcrease, 0.0, 1.2)
    ls = identity.line_strength
    crease_tint = np.array([1.0, 0.92, 0.88], np.float32)  # creases: darker, a touch redder
    albedo = albedo * (1.0 - ls * creases[..., None] * crease_tint)

    color = albedo * shade[..., None] + 255.0 * spec[..., None]
    color = np.clip(color, 0.0, 255.0).astype(np.float32)
    if hand == "left":
        # Mirror about the palm centre (the canvas is symmetric in x around it).
        color = np.ascontiguousarray(color[:, ::-1])
        alpha = np.ascontiguousarray(alpha[:, ::-1])
    return _Canvas(color=color, alpha=alpha, scale=scale, origin=origin)


# --------------------------------------------------------------------------------------------
# Backgrounds and frames
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _background(kind: str, seed: int, size: tuple[int, int]) -> np.ndarray:
    """A float32 BGR background: ``dark`` (dim, smooth), ``textured`` (mid-grey fabric/wood-like
    low-contrast texture in non-skin colours) or ``bright`` (white-ish wall)."""
    w, h = size
    rng = _seed_seq("background", kind, seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = float(rng.uniform(0, 2 * math.pi))
    ramp = ((xx - w / 2) * math.cos(ang) + (yy - h / 2) * math.sin(ang)) / max(w, h)
    if kind == "dark":
        level = float(rng.uniform(18, 55))
        tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
        base = level * (1.0 + 0.5 * ramp)[..., None] * tint
        base += _noise_field(rng, (h, w), 25.0)[..., None] * 3.0
    elif kind == "bright":
        level = float(rng.uniform(175, 230))
        tint = rng.uniform(0.92, 1.04, 3).astype(np.float32)
        base = level * (1.0 + 0.25 * ramp)[..., None] * tint
        base += _noise_field(rng, (h, w), 30.0)[..., None] * 4.0
    else:
        # Cool/neutral tones keep skin-coloured blobs out of the background.
        palette = np.array(
            [[120, 90, 60], [90, 110, 80], [140, 140, 140], [150, 120, 100], [70, 70, 90]],
            np.float32,
        )
        c0 = palette[rng.integers(len(palette))]
        c1 = palette[rng.integers(len(palette))]
        blend = _smoothstep(0.5 + 1.5 * _noise_field(rng, (h, w), 60.0) * 0.3)[..., None]
        base = c0 * (1 - blend) + c1 * blend
        # Fabric/wood-like streaks plus fine grain.
        sang = float(rng.uniform(0, math.pi))
        freq = float(rng.uniform(0.05, 0.18))
        phase = _noise_field(rng, (h, w), 20.0) * 2.0
        streak = np.sin((xx * math.cos(sang) + yy * math.sin(sang)) * freq + phase)
        base = base * (1.0 + 0.10 * streak[..., None] + 0.3 * ramp[..., None])
        base += _noise_field(rng, (h, w), 1.2)[..., None] * 6.0
    base = base.astype(np.float32)
    base.setflags(write=False)  # cached: shared between frames
    return base


def _homography(variation: Variation, canvas: _Canvas, size: tuple[int, int]) -> np.ndarray:
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
        rng = _seed_seq("noise", variation.noise_seed)
        img = img + rng.standard_normal(img.shape).astype(np.float32) * variation.noise_std
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = (int(size[0]), int(size[1]))
    if w < 16 or h < 16:
        raise ValueError(f"size={size!r} must be (width, height) of at least 16×16")
    return w, h


def render_hand_and_mask(
    identity: HandIdentity, variation: Variation, size: tuple[int, int] = (640, 480)
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`render_hand`, also returning the hand's coverage (float32 H×W in [0, 1])."""
    w, h = _check_size(size)
    # Pick the canvas pyramid level whose palm width is the smallest still >= the target (so
    # the warp only ever downsamples by < 2x, keeping thin creases alias-free).
    level = 0
    while level + 1 < _CANVAS_LEVELS and _CANVAS_W0 / 2 ** (level + 1) >= variation.palm_width_px:
        level += 1
    canvas = _canvas(identity, variation.hand, level)
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

    Args:
        identity: who.
        variation: pose, scale, position, handedness, lighting, blur, noise and background. If
            ``None``, one is drawn with :meth:`Variation.random` from ``rng``.
        size: (width, height) of the frame.
        rng: only used when ``variation`` is ``None``; a seed or a generator (``None`` = 0).

    The same ``identity`` and ``variation`` always give the identical frame.
    """
    if variation is None:
        variation = Variation.random(rng if rng is not None else 0, size=_check_size(size))
    return render_hand_and_mask(identity, variation, size)[0]


def render_no_hand(
    variation: Variation | int = 0, size: tuple[int, int] = (640, 480)
) -> np.ndarray:
    """A frame with only the background (and lighting/noise) of ``variation``.

    An int is taken as a seed for :meth:`Variation.random`, so ``render_no_hand(s)`` has the
    same background as ``render_hand(identity, rng=s)``.
    """
    w, h = _check_size(size)
    if not isinstance(variation, Variation):
        variation = Variation.random(int(variation), size=(w, h))
    bg = _background(variation.background, variation.background_seed, (w, h))
    return _finish(bg, variation, (w, h))


# --------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------


def presentation_frames(
    identity: HandIdentity,
    n_frames: int = 30,
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
    hand: str = "right",
    base: Variation | None = None,
    enter_fraction: float = 0.25,
    leave_fraction: float = 0.2,
    jitter: float = 1.0,
) -> list[np.ndarray]:
    """A clip of a hand being presented: it enters from below, holds roughly still, leaves.

    Args:
        identity: whose hand.
        n_frames: total frames (enter + hold + leave).
        seed: makes the pose, the jitter, the background and the noise deterministic.
        size: (width, height).
        hand: handedness (ignored when ``base`` is given).
        base: the held pose; drawn from :data:`TEST_RANGES` (with milder blur/noise) if ``None``.
        enter_fraction / leave_fraction: share of the frames spent entering / leaving; the hand
            moves in from below the frame (and out downwards, drifting sideways) with motion blur.
        jitter: scale of the hold phase's tremor (1.0 ≈ ±1.5° rotation, ±2 % scale, ±4 px).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames={n_frames} must be >= 1")
    w, h = _check_size(size)
    rng = _seed_seq("presentation", identity.seed, seed)
    if base is None:
        calm = replace(TEST_RANGES, blur_sigma=(0.0, 0.8), noise_std=(1.0, 4.0), tilt_deg=6.0)
        base = Variation.random(rng, calm, size=(w, h), hand=hand)
    n_enter = int(round(n_frames * enter_fraction))
    n_leave = int(round(n_frames * leave_fraction))
    n_hold = max(0, n_frames - n_enter - n_leave)
    cx0, cy0 = base.center
    off_y = 1.0 + 1.6 * base.palm_width_px / h  # fully below the frame (fingertips included)
    drift = float(rng.uniform(-0.15, 0.15))
    # Slow tremor: smooth random walks.
    k = max(n_frames, 2)
    walk = np.cumsum(rng.normal(0.0, 1.0, (k, 4)), axis=0)
    walk = cv2.GaussianBlur(walk.astype(np.float32), (1, 0), sigmaX=0, sigmaY=2.0)
    walk = walk - walk.mean(axis=0)
    walk = walk / (np.abs(walk).max(axis=0) + 1e-6)
    frames = []
    for i in range(n_frames):
        if i < n_enter:
            t = (i + 1) / (n_enter + 1)
            ease = 1.0 - (1.0 - t) ** 2
            cy = cy0 + (off_y - cy0) * (1.0 - ease)
            cx = cx0 + drift * (1.0 - ease)
            speed = (off_y - cy0) * 2 * (1.0 - t) / (n_enter + 1) * h
        elif i < n_enter + n_hold:
            cx, cy, speed = cx0, cy0, 0.0
        else:
            t = (i - n_enter - n_hold + 1) / (n_leave + 1)
            ease = t * t
            cy = cy0 + (off_y - cy0) * ease
            cx = cx0 - drift * ease
            speed = (off_y - cy0) * 2 * t / (n_leave + 1) * h
        j = walk[i] * jitter
        var = replace(
            base,
            center=(cx + j[0] * 4.0 / w, cy + j[1] * 4.0 / h),
            rotation_deg=base.rotation_deg + 1.5 * j[2],
            palm_width_px=base.palm_width_px * (1.0 + 0.02 * j[3]),
            blur_sigma=base.blur_sigma + min(6.0, 0.25 * speed),
            noise_seed=int(rng.integers(0, 2**31)),
        )
        frames.append(render_hand(identity, var, (w, h)))
    return frames


def demo_clip(
    enrolled: HandIdentity,
    unknown: HandIdentity,
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
    empty_frames: int = 10,
    presentation_len: int = 30,
) -> list[np.ndarray]:
    """The demo: empty, ``enrolled`` presents, empty, ``unknown`` presents, empty.

    The empty stretches share one background (as from a fixed camera), with fresh sensor noise;
    presentations use their own backgrounds drawn from ``seed``.
    """
    w, h = _check_size(size)
    rng = _seed_seq("demo", seed)
    bg_var = Variation.random(rng, replace(TEST_RANGES, blur_sigma=(0.0, 0.5)), size=(w, h))

    def empty(n: int) -> list[np.ndarray]:
        return [
            render_no_hand(replace(bg_var, noise_seed=int(rng.integers(0, 2**31))), (w, h))
            for _ in range(n)
        ]

    frames = empty(empty_frames)
    for who in (enrolled, unknown):
        pres_seed = int(rng.integers(0, 2**31))
        base = Variation.random(
            _seed_seq("demo-pose", seed, pres_seed),
            replace(TEST_RANGES, blur_sigma=(0.0, 0.6), noise_std=(1.0, 3.0), tilt_deg=5.0),
            size=(w, h),
        )
        base = replace(
            base,
            background=bg_var.background,
            background_seed=bg_var.background_seed,
            gain=bg_var.gain,
            offset=bg_var.offset,
            gradient=bg_var.gradient,
            gradient_deg=bg_var.gradient_deg,
            color_temp=bg_var.color_temp,
        )
        frames += presentation_frames(who, presentation_len, pres_seed, (w, h), base=base)
        frames += empty(empty_frames)
    return frames


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


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
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
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
    w, h = _check_size(size)
    out: dict[str, list[Path]] = {}
    for ident in identities:
        identity = ident if isinstance(ident, HandIdentity) else HandIdentity.from_seed(ident)
        for hand in hands:
            pid = palm_id(identity, hand)
            folder = directory / pid
            folder.mkdir(parents=True, exist_ok=True)
            rng = _seed_seq("gallery", seed, identity.seed, hand)
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
        _canvas.cache_clear()  # one identity at a time: keep memory flat for big galleries
    log.info("wrote gallery of %d palms to %s", len(out), directory)
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m palmpay.synth {gallery,video,frame} ...`` (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m palmpay.synth", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gallery", help="write <OUT>/<palm-id>/<n>.png hand photos")
    g.add_argument("out", type=Path)
    g.add_argument("--palms", type=int, default=20, help="number of identities (seeds 0..N-1)")
    g.add_argument("--first", type=int, default=0, help="first identity seed")
    g.add_argument("--samples", type=int, default=5, help="photos per palm")
    g.add_argument("--hands", default="right", help="comma list: right,left")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--sessions", type=int, default=0, help="split samples into sessions: s<k>_<n>.png"
    )
    v = sub.add_parser("video", help="write a presentation clip or the demo clip")
    v.add_argument("out", type=Path, help=".mp4, .avi or .y4m")
    v.add_argument("--identity", type=int, default=0, help="seed of the presented identity")
    v.add_argument(
        "--unknown", type=int, default=None, help="also present this identity (demo clip)"
    )
    v.add_argument("--frames", type=int, default=30, help="frames per presentation")
    v.add_argument("--empty", type=int, default=10, help="empty frames around (demo clip)")
    v.add_argument("--fps", type=int, default=15)
    v.add_argument("--seed", type=int, default=0)
    f = sub.add_parser("frame", help="write one PNG frame")
    f.add_argument("out", type=Path)
    f.add_argument("--identity", type=int, default=0)
    f.add_argument("--seed", type=int, default=0, help="variation seed")
    f.add_argument("--hand", default="right", choices=HANDS)
    f.add_argument("--palm-width", type=float, default=None, help="override the palm width (px)")
    for p in (g, v, f):
        p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        size = tuple(int(s) for s in args.size.lower().split("x"))
        if len(size) != 2:
            raise ValueError
    except ValueError:
        parser.error(f"--size {args.size!r} must be WIDTHxHEIGHT")
    if args.cmd == "gallery":
        hands = tuple(s.strip() for s in args.hands.split(",") if s.strip())
        for hnd in hands:
            if hnd not in HANDS:
                parser.error(f"--hands: {hnd!r} is not one of {HANDS}")
        write_gallery(
            args.out,
            range(args.first, args.first + args.palms),
            args.samples,
            args.seed,
            hands=hands,
            size=size,
            sessions=args.sessions,
        )
    elif args.cmd == "video":
        ident = HandIdentity.from_seed(args.identity)
        if args.unknown is None:
            frames = presentation_frames(ident, args.frames, args.seed, size)
        else:
            frames = demo_clip(
                ident,
                HandIdentity.from_seed(args.unknown),
                args.seed,
                size,
                args.empty,
                args.frames,
            )
        if args.out.suffix.lower() == ".y4m":
            write_y4m(args.out, frames, args.fps)
        else:
            write_video(args.out, frames, args.fps)
    else:
        var = Variation.random(args.seed, size=size, hand=args.hand)
        if args.palm_width is not None:
            var = replace(var, palm_width_px=args.palm_width)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(
            str(args.out), render_hand(HandIdentity.from_seed(args.identity), var, size)
        ):
            raise RuntimeError(f"cv2.imwrite failed for {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
