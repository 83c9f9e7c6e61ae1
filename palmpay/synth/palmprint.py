"""The palm print and the finger creases of a hand, drawn as crease maps in canvas pixels.

:func:`palm_print` draws the principal lines (heart, head, life), a few minor lines, a couple
of hundred fine creases along an identity-specific orientation field and the wrist creases, all
from the seed of ``(identity, hand)``; :func:`finger_creases` draws the flexion creases of the
finger joints and the thumb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from palmpay.synth.identity import HandIdentity, seed_seq
from palmpay.synth.shapes import Part, bezier, to_px

__all__ = ["finger_creases", "palm_print"]


def palm_print(
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
    rng = seed_seq("palmprint", identity.seed, hand)
    w, h = size
    crease = np.zeros((h, w), np.float32)
    shift = 8  # sub-pixel precision for cv2 drawing
    mul = float(1 << shift)

    def draw(curve: np.ndarray, thick_w: float, strength: float, taper: bool = True) -> None:
        pts = np.round(to_px(curve, scale, origin) * mul).astype(np.int32)
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
        draw(bezier(curve, 48), base_th * float(rng.uniform(0.9, 1.2)), 1.0)
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
        draw(bezier(np.array([p0, p1, p2]), 24), base_th * 0.6, float(rng.uniform(0.45, 0.8)))
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
        draw(bezier(pts, 6), 0.0065, float(rng.uniform(0.25, 0.6)), taper=False)
    # Wrist creases (bracelets).
    for k in range(2):
        y = 0.60 + 0.05 * k + float(rng.normal(0, 0.01))
        wave = float(rng.normal(0, 0.02))
        curve = np.array([[-0.36, y], [0.0, y + 0.03 + wave], [0.36, y]])
        draw(bezier(curve, 24), 0.010, 0.7)
    return crease


def finger_creases(
    identity: HandIdentity,
    parts: list[Part],
    scale: float,
    origin: tuple[float, float],
    size: tuple[int, int],
) -> np.ndarray:
    """Flexion creases across the fingers (base, middle and distal joints) and the thumb."""
    rng = seed_seq("fingercreases", identity.seed)
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
                pts = to_px(bezier(np.array([p0, p1, p2]), 16), scale, origin)
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
