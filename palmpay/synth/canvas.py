"""The canonical hand canvas: one upright, shaded, textured rendering per identity and hand.

:func:`hand_canvas` renders ``(identity, hand)`` into colour + alpha at one level of a small
resolution pyramid (palm width :data:`CANVAS_W0` pixels at level 0, halved per level) and
caches it: a 2.5-D height field shaded by a directional light, finger-joint creases, skin
mottling and the palm print. A left hand is the mirrored right-hand canvas. The smooth noise
fields and the blur it uses (:func:`noise_field`, :func:`canon_noise`, :func:`blur`) also
texture the backgrounds of :mod:`palmpay.synth.render`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from palmpay.synth.identity import HandIdentity, seed_seq
from palmpay.synth.palmprint import finger_creases, palm_print
from palmpay.synth.shapes import (
    CANVAS_X,
    CANVAS_Y,
    box_sdf,
    capsule_height,
    ellipse_sdf,
    grid,
    hand_parts,
    segment_dist,
    smin,
    smoothstep,
)

__all__ = [
    "CANVAS_LEVELS", "CANVAS_W0", "Canvas", "blur", "canon_noise", "hand_canvas", "noise_field",
]


# Palm width of the canvas, in pixels, at pyramid level 0. Lower levels halve it.
CANVAS_W0 = 320
CANVAS_LEVELS = 3


@dataclass(frozen=True)
class Canvas:
    color: np.ndarray  # float32 H×W×3, premultiplied-free skin colour (BGR, 0-255)
    alpha: np.ndarray  # float32 H×W in [0, 1]
    scale: float  # pixels per palm width
    origin: tuple[float, float]  # pixel position of the palm centre


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
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


def canon_noise(rng: np.random.Generator, shape: tuple[int, int], per_palm: float) -> np.ndarray:
    """Unit-std smooth noise on a grid of ``per_palm`` cells per palm width over the canvas,
    resized to ``shape``: the same pattern at every canvas resolution."""
    gw = int(math.ceil((CANVAS_X[1] - CANVAS_X[0]) * per_palm)) + 2
    gh = int(math.ceil((CANVAS_Y[1] - CANVAS_Y[0]) * per_palm)) + 2
    small = cv2.GaussianBlur(rng.standard_normal((gh, gw)).astype(np.float32), (0, 0), 1.0)
    n = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    s = float(n.std())
    return n / s if s > 0 else n


def noise_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-std Gaussian-filtered white noise (generated at low resolution for wide ``sigma``)."""
    h, w = shape
    if sigma >= 4.0:
        f = sigma / 1.5
        small: np.ndarray = rng.standard_normal(
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
def hand_canvas(identity: HandIdentity, hand: str, level: int) -> Canvas:
    """Render the canonical canvas of ``(identity, hand)`` at palm width ``CANVAS_W0 / 2**level``.

    Every level is rendered directly (not downsampled), with all random texture drawn on grids
    fixed in palm-width units, so the levels differ only in resolution.
    """
    scale = float(CANVAS_W0) / 2**level
    px, py, origin, size = grid(scale)
    parts = hand_parts(identity)

    # --- Height field: union of palm (rounded box + thenar/hypothenar bulges) and capsules.
    pl = identity.palm_length
    top, bottom = -0.52, -0.52 + pl
    palm_sdf = box_sdf(px, py, 0.0, 0.5 * (top + bottom), 0.5, 0.5 * pl, 0.26)
    thenar = ellipse_sdf(px, py, 0.24, 0.22, 0.26, 0.36, math.radians(-25.0))
    hypo = ellipse_sdf(px, py, -0.30, 0.15, 0.22, 0.36, math.radians(8.0))
    palm_sdf = smin(smin(palm_sdf, thenar, 0.08), hypo, 0.06)
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
        hp = capsule_height(px, py, part.a, part.b, part.r0, part.r1)
        if part.name == "forearm":
            hp = np.where(hp > 0, 0.6 * hp + 0.02, hp)
        else:
            hp = np.where(hp > 0, 0.12 + 0.9 * hp, hp)
        height = np.maximum(height, hp.astype(np.float32))
    # Signed "inside" measure: >0 inside the hand. Anti-aliased alpha over ~1 px.
    alpha = np.clip(height * scale + 0.5, 0.0, 1.0).astype(np.float32)
    h_in: np.ndarray = np.maximum(height, 0.0).astype(np.float32)
    # Finger-joint dips: creases are slight grooves in the height field too.
    fcrease = finger_creases(identity, parts, scale, origin, size)
    fcrease = cv2.GaussianBlur(fcrease, (0, 0), 0.8)
    h_in = h_in - 0.012 * blur(fcrease, 0.02 * scale)
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
    ao = np.clip(blur(h_s, 0.06 * scale) - h_s, 0.0, None) * 6.0
    ao = np.clip(ao, 0.0, 0.45)
    shade = (0.30 + 0.80 * diffuse) * (1.0 - ao)
    # Soft specular sheen on the pads.
    rz = 2 * diffuse * (1.0 / norm) - lz / ln
    spec = np.clip(rz, 0.0, 1.0) ** 12 * 0.10

    # --- Albedo: skin colour, mottling, redder creases and finger tips, palm print.
    rng = seed_seq("skin", identity.seed, hand)
    skin = np.array(identity.skin_bgr, np.float32)
    h, w = px.shape
    mott = canon_noise(rng, (h, w), 12.0) * 0.045
    mott2 = canon_noise(rng, (h, w), 60.0) * 0.03
    fine = noise_field(rng, (h, w), 0.7) * 0.025  # per-pixel skin grain, not identity-specific
    albedo = skin[None, None, :] * (1.0 + mott + mott2 + fine)[..., None]
    # Redder (more blood) at fingertips and thenar, slightly yellower centre.
    red = np.zeros((h, w), np.float32)
    for part in parts:
        if part.name in ("forearm", "thumb_meta"):
            continue
        d, t = segment_dist(px, py, part.a, part.b)
        red += np.exp(-(((1.0 - t) / 0.25) ** 2)) * (d < part.r0) * 0.6
    red += 0.4 * np.exp(-(((px - 0.24) / 0.2) ** 2 + ((py - 0.24) / 0.28) ** 2))
    red = blur(red, 0.03 * scale)
    albedo = albedo * (1.0 + red[..., None] * np.array([-0.10, -0.06, 0.03], np.float32))

    print_map = palm_print(identity, "right" if hand == "right" else "left", scale, origin, size)
    print_map = cv2.GaussianBlur(print_map, (0, 0), 0.6)
    # Palm print only on the palm (fades out at the palm edge and into the fingers).
    palm_mask = smoothstep(-palm_sdf / 0.05).astype(np.float32)
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
    return Canvas(color=color, alpha=alpha, scale=scale, origin=origin)
