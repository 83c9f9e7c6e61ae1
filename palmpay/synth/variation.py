"""How one frame shows a hand: :class:`Variation` (pose, lighting, blur, noise, background).

:meth:`Variation.random` samples one within :class:`VariationRanges`; :data:`TEST_RANGES` are
the ranges the detection tests promise to handle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from palmpay.synth.identity import check_hand

__all__ = ["BACKGROUNDS", "TEST_RANGES", "Variation", "VariationRanges"]


#: Background kinds of :attr:`Variation.background`.
BACKGROUNDS = ("dark", "textured", "bright")


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
        check_hand(self.hand)
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
