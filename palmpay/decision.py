"""Decision: presentation fusion and the open-set operating point.

A presentation's probe frames have each been scored against the same candidate identities (the
union of their shortlists, :mod:`palmpay.index`): for every frame and candidate, the code score
of that candidate's best enrolled sample. :func:`fuse` gives each candidate the **mean over the
frames** of those scores and picks the highest (ties go to the identity that sorts first);
:func:`decide` compares it with a threshold: ``match`` when the score reaches it, otherwise
``unknown``. A presentation without a good frame is :data:`NO_PALM`.

The threshold depends on the gallery. A stranger is charged to somebody when *any* enrolled
identity scores above it, so with N enrolled samples the false-positive identification rate is
FPIR(t, N) = 1 − (1 − r(t))^N, where r(t) is the per-sample impostor rate of the fused score
(:class:`palmpay.tail.TailModel`, fitted and validated by ``models/calibrate_open_set.py`` and
stored in ``models/compcode.json`` under ``open_set``). :class:`OperatingPoint` turns a target
FPIR (``PALMPAY_TARGET_FPIR``) into the threshold for N samples, and a ceiling on the false-
negative rate (``PALMPAY_MAX_FNIR``, read off the genuine fused scores of the calibration) into
N_safe: the largest gallery the palm alone can search at that target. Past N_safe a search must
be narrowed (the shopper's phone digits, :mod:`palmpay.api.routes.payments`).

This is the last stage of the live path; it imports no other stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from palmpay.tail import TailModel

__all__ = ["NO_PALM", "Decision", "OperatingPoint", "decide", "fuse"]


@dataclass(frozen=True)
class Decision:
    """``decision`` is ``match`` (``identity`` and ``score`` set), ``unknown`` (best ``score``,
    no identity) or ``no_palm`` (neither)."""

    decision: str
    identity: str | None
    score: float | None

    @property
    def matched(self) -> bool:
        return self.decision == "match"


#: The decision of a presentation with no good frame.
NO_PALM = Decision("no_palm", None, None)


def fuse(frame_scores: Sequence[Mapping[str, float]]) -> tuple[str | None, float]:
    """Best identity and its fused score from per-frame candidate scores.

    :param frame_scores: one mapping per probe frame, candidate identity → that frame's best
        sample code score; every mapping holds the same candidates.
    :returns: ``(identity, mean score over the frames)`` of the best candidate, or
        ``(None, 0.0)`` when there is no candidate (nothing enrolled).
    """
    if not frame_scores or not frame_scores[0]:
        return None, 0.0
    fused = {
        who: float(np.asarray([scores[who] for scores in frame_scores], np.float32).mean())
        for who in sorted(frame_scores[0])
    }
    best = max(fused, key=fused.__getitem__)
    return best, fused[best]


def decide(identity: str | None, score: float, threshold: float) -> Decision:
    """``match`` when there is an identity and ``score`` ≥ ``threshold``, else ``unknown``."""
    if identity is not None and score >= threshold:
        return Decision("match", identity, score)
    return Decision("unknown", None, score)


@dataclass(frozen=True)
class OperatingPoint:
    """Threshold as a function of the gallery size, from a target FPIR and an FNIR ceiling.

    :param tail: impostor tail of the fused score (per identity of the calibration).
    :param genuine: ``(fnir, score)`` pairs, ascending: the genuine fused score below which
        that fraction of genuine presentations fell in calibration.
    :param target_fpir: strangers charged to anyone, per presentation (lower is stricter).
    :param max_fnir: the largest acceptable share of enrolled shoppers not recognised; it sets
        :attr:`n_safe`.
    :param n_safe_override: force N_safe (e.g. 0: every search must be narrowed).
    """

    tail: TailModel
    genuine: tuple[tuple[float, float], ...]
    target_fpir: float
    max_fnir: float
    n_safe_override: int | None = None

    @classmethod
    def from_calibration(cls, open_set: Mapping[str, Any], target_fpir: float, max_fnir: float,
                         n_safe_override: int | None = None) -> OperatingPoint:
        """Build from the ``open_set`` section of the model's calibration JSON."""
        tail = TailModel(**open_set["tail"])
        genuine = tuple((float(f), float(s)) for f, s in open_set["genuine_quantiles"])
        return cls(tail, genuine, target_fpir, max_fnir, n_safe_override)

    def per_sample_rate(self, n_samples: int) -> float:
        """The per-sample impostor rate that gives :attr:`target_fpir` over ``n_samples``."""
        n = max(int(n_samples), 1)
        return -math.expm1(math.log1p(-self.target_fpir) / n)

    def threshold(self, n_samples: int) -> float:
        """The decision threshold for a search over ``n_samples`` enrolled samples."""
        return self.tail.threshold(self.per_sample_rate(n_samples)
                                   * self.tail.samples_per_identity)

    def fpir(self, threshold: float, n_samples: int) -> float:
        """Modelled FPIR of a search over ``n_samples`` at ``threshold``."""
        rate = min(self.tail.per_sample_rate(threshold), 1.0)
        return -math.expm1(max(int(n_samples), 0) * math.log1p(-rate)) if rate < 1 else 1.0

    def fnir(self, threshold: float) -> float:
        """Share of genuine presentations below ``threshold`` (calibration, interpolated)."""
        fnirs = [f for f, _ in self.genuine]
        scores = [s for _, s in self.genuine]
        return float(np.interp(threshold, scores, fnirs))

    @property
    def n_safe(self) -> int:
        """Largest gallery (samples) whose threshold keeps FNIR ≤ :attr:`max_fnir`."""
        if self.n_safe_override is not None:
            return self.n_safe_override
        scores = [s for _, s in self.genuine]
        fnirs = [f for f, _ in self.genuine]
        highest = float(np.interp(self.max_fnir, fnirs, scores))
        rate = self.tail.per_sample_rate(highest)
        if rate <= 0:
            return 2**62
        return int(math.log1p(-self.target_fpir) / math.log1p(-rate))

    def needs_narrowing(self, n_samples: int) -> bool:
        """Whether a search over ``n_samples`` samples is past :attr:`n_safe`."""
        return n_samples > self.n_safe

    def describe(self, n_samples: int) -> dict[str, float | int | bool]:
        """What an operator sees (``palmpay status``, ``GET /v1/status``)."""
        threshold = self.threshold(n_samples)
        return {
            "enrolled_samples": int(n_samples),
            "target_fpir": self.target_fpir,
            "max_fnir": self.max_fnir,
            "threshold": round(threshold, 6),
            "expected_fpir": self.fpir(threshold, n_samples),
            "expected_fnir": round(self.fnir(threshold), 6),
            "n_safe": self.n_safe,
            "narrowing_required": self.needs_narrowing(n_samples),
        }
