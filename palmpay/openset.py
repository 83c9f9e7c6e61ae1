"""Open-set identification over score matrices: fused presentation scores, FPIR/FNIR, and the
check of a fitted impostor tail on palms the fit did not see.

Used by ``palmpay eval --protocol open-set`` (:mod:`palmpay.evaluate_open_set`) and by
``models/calibrate_open_set.py``, which fits the :class:`~palmpay.tail.TailModel` of the
decision stage. Everything here is a pure function of arrays, like :mod:`palmpay.metrics`.

Scores follow the live decision (:mod:`palmpay.decision`): a frame's score for an identity is
its best code score over that identity's enrolled samples, and a presentation's score for an
identity is the mean of its frames' scores.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from palmpay.metrics import binomial_interval
from palmpay.tail import TailModel

__all__ = [
    "CHECK_RATES",
    "TailCheck",
    "check_tail",
    "frame_identity_scores",
    "fused_scores",
    "impostor_scores",
    "presentations",
]

#: The per-identity impostor rates at which a fitted tail is checked.
CHECK_RATES = (1e-4, 1e-5, 1e-6, 1e-7)


def frame_identity_scores(scores: np.ndarray, gallery_labels: Sequence[str],
                          identities: Sequence[str]) -> np.ndarray:
    """(frames, samples) code scores → (frames, identities): each identity's best sample."""
    labels = np.asarray(gallery_labels)
    out = np.empty((scores.shape[0], len(identities)), np.float32)
    for column, who in enumerate(identities):
        out[:, column] = scores[:, labels == who].max(axis=1)
    return out


def presentations(labels: Sequence[str], sessions: Sequence[int], size: int = 3, *,
                  every: bool = False) -> np.ndarray:
    """Presentations of ``size`` frames of one palm from one session, as (P, size) row indices.

    ``every=False``: consecutive non-overlapping groups (what a probe set is); ``every=True``:
    every combination (many correlated presentations, for fitting and checking a tail)."""
    label_a, session_a = np.asarray(labels), np.asarray(sessions)
    groups: list[tuple[int, ...]] = []
    for key in sorted(set(zip(label_a.tolist(), session_a.tolist(), strict=True))):
        rows = np.flatnonzero((label_a == key[0]) & (session_a == key[1])).tolist()
        if every:
            groups.extend(itertools.combinations(rows, size))
        else:
            groups.extend(tuple(rows[i:i + size]) for i in range(0, len(rows) - size + 1, size))
    return np.asarray(groups, np.int64).reshape(-1, size)


def fused_scores(frame_scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(frames, identities) and (P, size) presentations → (P, identities) mean over frames."""
    return frame_scores[groups].mean(axis=1)


def impostor_scores(fused: np.ndarray, owners: Sequence[str], identities: Sequence[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Every (presentation, other identity) fused score, and the id of its (palm, identity)
    pair: presentations of one palm against one identity are one correlated cluster."""
    owners_a, ids = np.asarray(owners), np.asarray(identities)
    keep = owners_a[:, None] != ids[None, :]
    palm_index = {who: i for i, who in enumerate(sorted(set(owners_a.tolist()) | set(ids)))}
    rows = np.asarray([palm_index[o] for o in owners_a.tolist()], np.int64)
    cols = np.asarray([palm_index[i] for i in ids.tolist()], np.int64)
    pair = rows[:, None] * len(palm_index) + cols[None, :]
    return fused[keep], pair[keep]


@dataclass(frozen=True)
class TailCheck:
    """A fitted tail's prediction at one rate against held-out impostors.

    ``low``–``high`` is the 95 % interval of the held-out rate. Impostor scores come in
    clusters (every presentation of one palm against one identity), so the interval comes from
    resampling those clusters (Poisson bootstrap); with no error at all it is the one-sided
    Clopper–Pearson bound over the clusters. ``holds``: the interval meets [predicted / 2,
    2 · predicted] — the data do not show the model off by more than ×2. ``resolved``: the
    interval lies inside that band, so the check really pins the rate to within ×2.
    """

    predicted: float
    threshold: float
    errors: int
    trials: int
    clusters: int
    empirical: float
    low: float
    high: float

    @property
    def ratio(self) -> float:
        return self.empirical / self.predicted

    @property
    def holds(self) -> bool:
        return self.low <= 2 * self.predicted and self.high >= self.predicted / 2

    @property
    def resolved(self) -> bool:
        return self.low >= self.predicted / 2 and self.high <= 2 * self.predicted


def check_tail(tail: TailModel, impostors: np.ndarray, pairs: np.ndarray,
               rates: Sequence[float] = CHECK_RATES, *, boots: int = 2000, seed: int = 0
               ) -> list[TailCheck]:
    """Check ``tail``'s threshold at each rate against held-out impostor scores."""
    impostors = np.asarray(impostors).ravel()
    pairs = np.asarray(pairs).ravel()
    _, cluster = np.unique(pairs, return_inverse=True)
    n_clusters = int(cluster.max()) + 1
    sizes = np.bincount(cluster, minlength=n_clusters)
    rng = np.random.default_rng(seed)
    checks = []
    for rate in rates:
        threshold = tail.threshold(rate)
        hits = impostors >= threshold
        errors = int(hits.sum())
        if errors == 0:
            low, high = 0.0, binomial_interval(0, n_clusters)[1]
        else:
            per = np.bincount(cluster[hits], minlength=n_clusters)
            hit = np.flatnonzero(per)
            rest = np.setdiff1d(np.arange(n_clusters), hit)
            weights = rng.poisson(1.0, size=(boots, len(hit)))
            # the clusters without a hit only weigh on the denominator: their Poisson weights
            # sum to Poisson(len(rest)), times their mean size
            rest_size = float(sizes[rest].mean()) if len(rest) else 0.0
            total = weights @ sizes[hit] + rng.poisson(len(rest), size=boots) * rest_size
            boot = (weights @ per[hit]) / np.maximum(total, 1)
            low, high = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
        checks.append(TailCheck(rate, threshold, errors, len(impostors), n_clusters,
                                errors / len(impostors), low, high))
    return checks
