"""Clips: a hand being presented (:func:`presentation_frames`) and the demo's checkout video.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from palmpay.synth.identity import HandIdentity, seed_seq
from palmpay.synth.render import check_size, render_hand, render_no_hand
from palmpay.synth.variation import TEST_RANGES, Variation

__all__ = ["demo_clip", "presentation_frames"]


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

    :param identity: whose hand.
    :param n_frames: total frames (enter + hold + leave).
    :param seed: makes the pose, the jitter, the background and the noise deterministic.
    :param size: (width, height).
    :param hand: handedness (ignored when ``base`` is given).
    :param base: the held pose; drawn from :data:`TEST_RANGES` (with milder blur/noise) if
        ``None``.
    :param enter_fraction: share of the frames spent entering: the hand moves in from below the
        frame with motion blur.
    :param leave_fraction: share of the frames spent leaving (downwards, drifting sideways).
    :param jitter: scale of the hold phase's tremor (1.0 ≈ ±1.5° rotation, ±2 % scale, ±4 px).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames={n_frames} must be >= 1")
    w, h = check_size(size)
    rng = seed_seq("presentation", identity.seed, seed)
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
    walk: np.ndarray = np.cumsum(rng.normal(0.0, 1.0, (k, 4)), axis=0)
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
    w, h = check_size(size)
    rng = seed_seq("demo", seed)
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
            seed_seq("demo-pose", seed, pres_seed),
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
