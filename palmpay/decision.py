"""Decision: presentation fusion and the operating threshold.

A presentation's probe frames have each been scored against the same candidate identities (the
union of their shortlists, :mod:`palmpay.index`): for every frame and candidate, the code score
of that candidate's best enrolled sample. :func:`fuse` gives each candidate the **mean over the
frames** of those scores and picks the highest (ties go to the identity that sorts first);
:func:`decide` compares it with the model's calibrated threshold (``models/compcode.json``,
chosen at a fixed false-accept rate): ``match`` when the score reaches it, otherwise
``unknown``. A presentation without a good frame is :data:`NO_PALM`.

This is the last stage of the live path; it imports no other stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["NO_PALM", "Decision", "decide", "fuse"]


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
