"""Synthetic people: :class:`HandIdentity`, palm names, and the seeded generators behind them.

A :class:`HandIdentity` is drawn from an integer seed (hand proportions, skin tone); every
``(identity, hand)`` pair is its own palm, named by :func:`palm_id`. :func:`seed_seq` turns a
tuple of ints and strings into a generator, so that every random draw of the package is keyed
by what it is for (``"identity"``, ``"palmprint"``, ``"noise"`` ...) and stable across runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FINGERS", "FINGER_NOMINAL", "HANDS", "HandIdentity", "check_hand", "palm_id", "seed_seq",
]


#: Handedness values of :attr:`Variation.hand`.
HANDS = ("right", "left")


# Finger order for a right hand, from image left to image right (palm-on): little .. index.
FINGERS = ("little", "ring", "middle", "index")
# Nominal finger base (x, y), width, length (all in palm widths) and spread angle (degrees from
# straight up, positive = towards +x / the thumb).
FINGER_NOMINAL = {
    "little": ((-0.37, -0.36), 0.20, 0.66, -17.0),
    "ring": ((-0.13, -0.47), 0.225, 0.82, -6.0),
    "middle": ((0.11, -0.50), 0.235, 0.88, 2.0),
    "index": ((0.35, -0.45), 0.23, 0.80, 11.0),
}


def seed_seq(*parts: int | str) -> np.random.Generator:
    """A generator seeded from a tuple of ints/strings (stable across runs and platforms)."""
    ints: list[int] = []
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
        rng = seed_seq("identity", seed)
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
        for name in FINGERS:
            _, w, ln, a = FINGER_NOMINAL[name]
            lengths.append(float(ln * scale_len * rng.normal(1.0, 0.03)))
            widths.append(float(w * rng.normal(1.0, 0.04)))
            angles.append(float(a * rng.uniform(0.8, 1.3) + rng.normal(0.0, 1.5)))
        blue, green, red = (float(v) for v in np.clip(skin, 40, 250))
        return cls(
            seed=int(seed),
            skin_bgr=(blue, green, red),
            finger_lengths=_per_finger(lengths),
            finger_widths=_per_finger(widths),
            finger_angles=_per_finger(angles),
            thumb_angle=float(rng.uniform(42.0, 58.0)),
            thumb_length=float(rng.normal(0.95, 0.04)),
            palm_length=float(rng.normal(1.08, 0.03)),
            line_strength=float(rng.uniform(0.32, 0.48)),
        )


def _per_finger(values: list[float]) -> tuple[float, float, float, float]:
    little, ring, middle, index = values  # the order of FINGERS
    return little, ring, middle, index


def palm_id(identity: HandIdentity | int, hand: str = "right") -> str:
    """The name of a palm, ``"<seed:05d>-<hand>"``: the gallery folder name used by
    :func:`write_gallery` (every ``(identity, hand)`` is a distinct palm)."""
    seed = identity.seed if isinstance(identity, HandIdentity) else int(identity)
    check_hand(hand)
    return f"{seed:05d}-{hand}"


def check_hand(hand: str) -> None:
    if hand not in HANDS:
        raise ValueError(f"hand={hand!r} must be one of {HANDS}")
