"""Liveness: is one presentation's burst of frames a live hand, or a presentation attack?

:func:`assess_liveness` looks at the frames of one presentation (the checkout sends ~4 good
frames about 300 ms apart; the live path has more) and their 21 hand landmarks
(:class:`palmpay.roi.Hand`), and measures four cues, each against a threshold below. The
thresholds come from ``scripts/security/liveness_eval.py`` (docs/security/liveness.md), which
builds the attacks from coep-dev photos and synthetic hands.

- **change** (frozen or looping frames): the smallest mean absolute grey-level change, over
  every *pair* of frames, inside the union of the two palm boxes (blurred by
  :data:`BLUR_SIGMA` so that sensor noise and JPEG blocks count little). A still photo replayed
  as a video, or a looping sequence with a period shorter than the burst, has two frames that
  differ only by noise. Below :data:`MIN_CHANGE`: attack.
- **nonrigid** (a flat print or a phone moved rigidly): a least-squares homography is fitted to
  the 21 landmarks (x, y) between every pair of frames; the residual RMS over the palm width is
  what the landmarks moved *beyond* a plane's motion. A flat picture moved, rotated or tilted
  fits with only the landmark model's jitter left; a hand's fingers articulate. The largest
  residual over the pairs below :data:`MIN_NONRIGID`: attack.
- **moire** (a screen): peak of the palm region's log-magnitude spectrum above its radial median
  (the natural 1/f fall-off), in the band above :data:`MOIRE_MIN_FREQ` cycles per pixel. A
  screen's pixel grid, resampled by the camera's, leaves sharp periodic peaks. The median over
  the frames above :data:`MAX_MOIRE`: attack.
- **glare** (a screen or glossy print): share of the palm box's pixels that are saturated and
  colourless (every channel ≥ :data:`GLARE_LEVEL`); skin scatters light, glass reflects it.
  The median over the frames above :data:`MAX_GLARE`: attack.

``score`` is the smallest of the per-cue margins mapped to 0..1 (0.5 at the threshold, 0 or 1
at a factor :data:`MARGIN_FACTOR` beyond it), so the weakest cue decides. ``decision`` is
``attack`` when a :data:`STRONG_CUES` cue is past its threshold; ``unsure`` when only
``nonrigid`` is (unless articulation is required) or when fewer than two frames have a hand
(motion cannot be judged); ``live`` otherwise. ``nonrigid`` is the weak cue: real hands held
still on coep-dev's pegs do not articulate between shots either.

What an RGB camera cannot see, and this module does not pretend to: veins and blood flow (no
near-infrared), depth (one camera: a curved print or a 3-D mask is not flat), silicone or
latex hands (they articulate and have skin-like colour), and frames injected into the
terminal's software (they are whatever the attacker renders, including a live video of the
victim's hand). Those need other hardware or attestation of the capture path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import cv2
import numpy as np

from palmpay.roi import Hand, palm_region, palm_width_px

__all__ = [
    "BLUR_SIGMA",
    "DECISIONS",
    "GLARE_LEVEL",
    "MARGIN_FACTOR",
    "MAX_GLARE",
    "MAX_MOIRE",
    "MIN_CHANGE",
    "MIN_NONRIGID",
    "MOIRE_MIN_FREQ",
    "STRONG_CUES",
    "Liveness",
    "assess_liveness",
    "change_between",
    "glare_fraction",
    "moire_peak",
    "nonrigid_residual",
]

log = logging.getLogger(__name__)

#: Gaussian blur (pixels) of the grey palm region before frames are differenced.
BLUR_SIGMA = 1.5
#: Smallest mean absolute grey-level change between two frames of a live hand (0-255 levels).
MIN_CHANGE = 1.0
#: Smallest landmark residual beyond a homography (share of the palm width) of a live hand.
MIN_NONRIGID = 0.03
#: Largest spectral peak over the radial median (natural log units) of a real palm.
MAX_MOIRE = 2.6
#: Lowest spatial frequency (cycles per pixel) searched for screen peaks.
MOIRE_MIN_FREQ = 0.08
#: Grey level (every channel) from which a pixel counts as glare.
GLARE_LEVEL = 250
#: Largest share of glare pixels in the palm box of a real palm.
MAX_GLARE = 0.01
#: A cue this many times past its threshold maps to a score of 0 (or 1 on the live side).
MARGIN_FACTOR = 4.0
#: Cues that alone make a presentation an attack; ``nonrigid`` alone makes it ``unsure``
#: unless articulation is required (see :func:`assess_liveness`).
STRONG_CUES = ("change", "moire", "glare")
#: The possible :attr:`Liveness.decision` values.
DECISIONS = ("live", "attack", "unsure")
#: Palm crops are resampled to this size for the spectrum and the glare count.
_CROP = 128


@dataclass(frozen=True)
class Liveness:
    """The liveness of one presentation: ``score`` (0..1, 0.5 at the thresholds), ``decision``
    (``live``, ``attack`` or ``unsure``), the measured cues (None when not measurable) and the
    names of the cues past their thresholds (``failed``)."""

    score: float
    decision: str
    frames: int
    change: float | None
    nonrigid: float | None
    moire: float | None
    glare: float | None
    failed: tuple[str, ...]

    @property
    def attack(self) -> bool:
        return self.decision == "attack"

    def describe(self) -> str:
        """One log line: decision, score and cues."""
        cues = ", ".join(f"{name} {value:.4g}" for name, value in self.cues().items()
                         if value is not None)
        why = f" ({', '.join(self.failed)})" if self.failed else ""
        return f"{self.decision}{why} score {self.score:.2f} over {self.frames} frames: {cues}"

    def cues(self) -> dict[str, float | None]:
        return {"change": self.change, "nonrigid": self.nonrigid, "moire": self.moire,
                "glare": self.glare}


def _box(hand: Hand, shape: tuple[int, ...], grow: float = 0.25) -> tuple[int, int, int, int]:
    """The palm box grown by ``grow`` of its size on each side, clipped to the frame."""
    x0, y0, x1, y1 = palm_region(hand)
    dx, dy = grow * (x1 - x0), grow * (y1 - y0)
    h, w = shape[:2]
    return (max(0, int(x0 - dx)), max(0, int(y0 - dy)),
            min(w, int(math.ceil(x1 + dx))), min(h, int(math.ceil(y1 + dy))))


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


def change_between(a: np.ndarray, b: np.ndarray, hand_a: Hand, hand_b: Hand) -> float:
    """Mean absolute grey-level change between two frames inside the union of their palm boxes
    (after a :data:`BLUR_SIGMA` blur); ``inf`` when the frames differ in size."""
    if a.shape[:2] != b.shape[:2]:
        return math.inf
    ax0, ay0, ax1, ay1 = _box(hand_a, a.shape)
    bx0, by0, bx1, by1 = _box(hand_b, b.shape)
    x0, y0, x1, y1 = min(ax0, bx0), min(ay0, by0), max(ax1, bx1), max(ay1, by1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return math.inf
    crops = [cv2.GaussianBlur(_grey(f[y0:y1, x0:x1]).astype(np.float32), (0, 0), BLUR_SIGMA)
             for f in (a, b)]
    return float(np.mean(np.abs(crops[0] - crops[1])))


def nonrigid_residual(hand_a: Hand, hand_b: Hand) -> float:
    """RMS landmark residual of the best homography from ``hand_a`` to ``hand_b``, over the
    mean palm width of the two."""
    src = hand_a.landmarks[:, :2].astype(np.float64)
    dst = hand_b.landmarks[:, :2].astype(np.float64)
    scale = max(0.5 * (palm_width_px(hand_a) + palm_width_px(hand_b)), 1.0)
    # Normalise before the fit (Hartley) so that the DLT is well conditioned.
    centre, spread = src.mean(axis=0), scale
    hmat, _ = cv2.findHomography((src - centre) / spread, (dst - centre) / spread, 0)
    if hmat is None:
        return math.inf
    fitted = cv2.perspectiveTransform(((src - centre) / spread)[None], hmat)[0] * spread + centre
    return float(np.sqrt(np.mean(np.sum((fitted - dst) ** 2, axis=1))) / scale)


def _palm_crop(frame: np.ndarray, hand: Hand) -> np.ndarray | None:
    """The palm box (not grown: skin only), at most :data:`_CROP` pixels on its longer side."""
    x0, y0, x1, y1 = palm_region(hand)
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 16 or y1 - y0 < 16:
        return None
    crop = frame[y0:y1, x0:x1]
    side = max(x1 - x0, y1 - y0)
    if side > _CROP:  # never upsample: that would smear the screen's grid
        f = _CROP / side
        crop = cv2.resize(crop, (max(16, round((x1 - x0) * f)), max(16, round((y1 - y0) * f))),
                          interpolation=cv2.INTER_AREA)
    return crop


def moire_peak(frame: np.ndarray, hand: Hand) -> float:
    """Largest log-magnitude of the palm crop's spectrum above its radial median, at
    frequencies above :data:`MOIRE_MIN_FREQ` cycles per pixel (0 when there is no crop)."""
    crop = _palm_crop(frame, hand)
    if crop is None:
        return 0.0
    grey = _grey(crop).astype(np.float32)
    grey -= cv2.GaussianBlur(grey, (0, 0), 4.0)  # drop shading; keep texture
    h, w = grey.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    spectrum = np.log(np.abs(np.fft.fftshift(np.fft.fft2(grey * window))) + 1e-3)
    fy = (np.arange(h) - h // 2) / h
    fx = (np.arange(w) - w // 2) / w
    radius = np.hypot(*np.meshgrid(fx, fy))
    band = radius >= MOIRE_MIN_FREQ
    # Radial median in rings of one frequency bin: the natural fall-off to compare with. The
    # peak over a ring minus its median, largest over the rings (one sort for all of them).
    ring = np.minimum((radius * min(h, w)).astype(int), min(h, w) // 2)
    if not band.any():
        return 0.0
    rings, values = ring[band], spectrum[band]
    ordered = values[np.lexsort((values, rings))]
    counts = np.bincount(rings)
    counts = counts[counts > 0]
    starts = np.cumsum(counts) - counts
    low, high = starts + (counts - 1) // 2, starts + counts // 2
    medians = (ordered[low] + ordered[high]) / 2  # np.median's: the middle, or the two's mean
    return float((ordered[starts + counts - 1] - medians).max())


def glare_fraction(frame: np.ndarray, hand: Hand) -> float:
    """Share of the palm box's pixels with every channel at or above :data:`GLARE_LEVEL`."""
    x0, y0, x1, y1 = palm_region(hand)
    h, w = frame.shape[:2]
    crop = frame[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    if crop.size == 0:
        return 0.0
    bright = crop >= GLARE_LEVEL if crop.ndim == 2 else np.all(crop >= GLARE_LEVEL, axis=2)
    return float(bright.mean())


def _margin(value: float, threshold: float, live_above: bool) -> float:
    """0.5 at the threshold, towards 1 on the live side, 0 at :data:`MARGIN_FACTOR` beyond."""
    if math.isinf(value):
        return 1.0 if live_above else 0.0
    ratio = (value + 1e-9) / threshold if live_above else threshold / (value + 1e-9)
    return float(np.clip(0.5 + 0.5 * math.log(ratio) / math.log(MARGIN_FACTOR), 0.0, 1.0))


def assess_liveness(frames: Sequence[np.ndarray], hands: Sequence[Hand | None],
                    require_articulation: bool = False) -> Liveness:
    """The liveness of one presentation from its frames (BGR) and their hands (None where a
    frame has none; such frames are skipped).

    A presentation whose only failed cue is ``nonrigid`` (no articulation seen: a flat print
    moved rigidly, or a real hand held very still) is ``unsure``, or an ``attack`` with
    ``require_articulation``: on coep-dev's still-held real hands that rule refuses most
    bona fide presentations (docs/security/liveness.md)."""
    if len(frames) != len(hands):
        raise ValueError(f"{len(frames)} frames but {len(hands)} hands")
    pairs = [(f, h) for f, h in zip(frames, hands, strict=True) if h is not None]
    moire = float(np.median([moire_peak(f, h) for f, h in pairs])) if pairs else None
    glare = float(np.median([glare_fraction(f, h) for f, h in pairs])) if pairs else None
    change = nonrigid = None
    if len(pairs) >= 2:
        both = list(combinations(pairs, 2))
        change = min(change_between(a, b, ha, hb) for (a, ha), (b, hb) in both)
        nonrigid = max(nonrigid_residual(ha, hb) for (_, ha), (_, hb) in both)
    margins = {}
    if change is not None and nonrigid is not None:
        margins["change"] = _margin(change, MIN_CHANGE, live_above=True)
        margins["nonrigid"] = _margin(nonrigid, MIN_NONRIGID, live_above=True)
    if moire is not None and glare is not None:
        margins["moire"] = _margin(moire, MAX_MOIRE, live_above=False)
        margins["glare"] = _margin(glare, MAX_GLARE, live_above=False)
    failed = tuple(name for name, m in margins.items() if m < 0.5)
    score = min(margins.values()) if margins else 0.0
    if any(name in STRONG_CUES for name in failed) or (failed and require_articulation):
        decision = "attack"
    elif failed or len(pairs) < 2:
        decision = "unsure"
    else:
        decision = "live"
    result = Liveness(score, decision, len(pairs), change, nonrigid, moire, glare, failed)
    log.debug("liveness: %s", result.describe())
    return result
