"""Biometric error rates as pure functions over score arrays (bob.measure conventions).

Verification functions take ``(negatives, positives)``: 1-D arrays of impostor and genuine
scores, **higher = more genuine**. A comparison is *accepted* when ``score >= threshold``:

* FAR(t) = #{negatives ≥ t} / #negatives  (false accepts)
* FRR(t) = #{positives < t} / #positives  (false rejects)

Identification functions take a score matrix ``(P, G)`` (probe × gallery entry) with the labels
of its rows and columns; a gallery identity may have several entries. A probe is *mated* when
its label occurs in the gallery, *non-mated* otherwise (open-set).

Error counts on a finite sample are only so precise: :func:`binomial_interval` (Clopper–Pearson)
and :func:`max_errors_consistent` turn a count of errors in ``n`` trials into what the sample can
resolve, so that a check never hinges on one pair.

Everything sorts each score array once and uses :func:`numpy.searchsorted`, so tens of millions
of impostor scores are fine.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "binomial_cdf",
    "binomial_interval",
    "max_errors_consistent",
    "far_frr",
    "eer",
    "eer_threshold",
    "far_threshold",
    "frr_at_far",
    "det",
    "cmc",
    "rank1",
    "detection_identification_rate",
    "false_alarm_rate",
]


def _scores(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite scores")
    return arr


def _rates(neg_sorted: np.ndarray, pos_sorted: np.ndarray, thresholds: np.ndarray):
    far = 1.0 - np.searchsorted(neg_sorted, thresholds, side="left") / neg_sorted.size
    frr = np.searchsorted(pos_sorted, thresholds, side="left") / pos_sorted.size
    return far, frr


def far_frr(negatives: np.ndarray, positives: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(FAR, FRR)`` at ``threshold`` (accept when score ≥ threshold)."""
    neg = _scores("negatives", negatives)
    pos = _scores("positives", positives)
    return float(np.mean(neg >= threshold)), float(np.mean(pos < threshold))


def _eer_point(negatives: np.ndarray, positives: np.ndarray) -> tuple[float, float]:
    neg = np.sort(_scores("negatives", negatives))
    pos = np.sort(_scores("positives", positives))
    # FAR and FRR only change at observed scores; one threshold above everything covers FAR=0.
    top = np.nextafter(max(neg[-1], pos[-1]), np.inf)
    thresholds = np.unique(np.concatenate([neg, pos, [top]]))
    far, frr = _rates(neg, pos, thresholds)
    i = int(np.argmin(np.abs(far - frr)))
    return float(thresholds[i]), float((far[i] + frr[i]) / 2.0)


def eer_threshold(negatives: np.ndarray, positives: np.ndarray) -> float:
    """The observed score (or one just above the maximum) where |FAR − FRR| is smallest;
    the smallest such score on ties."""
    return _eer_point(negatives, positives)[0]


def eer(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Equal error rate: ``(FAR + FRR) / 2`` at :func:`eer_threshold`."""
    return _eer_point(negatives, positives)[1]


def far_threshold(negatives: np.ndarray, positives: np.ndarray, far: float) -> float:
    """The smallest threshold ``t`` with FAR(t) ≤ ``far``.

    With ``m = floor(far · #negatives)`` false accepts allowed, ``t`` is the float just above
    the (m+1)-th highest negative score, so at most ``m`` negatives are ≥ t. Tied negatives are
    therefore all accepted or all rejected together, and FAR(t) may fall below ``far`` when
    ties straddle the cut. If ``m ≥ #negatives`` every score is accepted and the lowest
    negative is returned. ``positives`` is unused (kept for the common signature).
    """
    neg = np.sort(_scores("negatives", negatives))
    _scores("positives", positives)
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    allowed = int(np.floor(far * neg.size + 1e-9))
    if allowed >= neg.size:
        return float(neg[0])
    cut = neg[neg.size - allowed - 1]
    return float(np.nextafter(cut, np.array(np.inf, dtype=neg.dtype)))


def frr_at_far(negatives: np.ndarray, positives: np.ndarray, far: float) -> float:
    """FRR at :func:`far_threshold` ``(negatives, positives, far)``."""
    return far_frr(negatives, positives, far_threshold(negatives, positives, far))[1]


def det(
    negatives: np.ndarray,
    positives: np.ndarray,
    n_points: int = 1000,
    *,
    return_thresholds: bool = False,
):
    """Points of the DET / ROC curve: ``(far, frr)`` arrays (and thresholds if asked).

    Thresholds are ``n_points`` values evenly spaced from the lowest to just above the highest
    score (bob.measure's choice), so the curve runs from FAR = 1 to FAR = 0. Plot FRR against
    FAR on log (or probit) axes.
    """
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    neg = np.sort(_scores("negatives", negatives))
    pos = np.sort(_scores("positives", positives))
    low = min(neg[0], pos[0])
    high = np.nextafter(max(neg[-1], pos[-1]), np.inf)
    thresholds = np.linspace(low, high, n_points)
    far, frr = _rates(neg, pos, thresholds)
    if return_thresholds:
        return far, frr, thresholds
    return far, frr


def _matrix(score_matrix, probe_labels, gallery_labels):
    scores = np.asarray(score_matrix, dtype=np.float64)
    probe_labels = np.asarray(probe_labels)
    gallery_labels = np.asarray(gallery_labels)
    if scores.ndim != 2 or scores.shape != (probe_labels.size, gallery_labels.size):
        raise ValueError(
            f"score matrix {scores.shape} does not match {probe_labels.size} probe and "
            f"{gallery_labels.size} gallery labels"
        )
    mated = probe_labels.reshape(-1, 1) == gallery_labels.reshape(1, -1)
    best_pos = np.where(mated, scores, -np.inf).max(axis=1)
    best_neg = np.where(mated, -np.inf, scores).max(axis=1)
    has_mate = mated.any(axis=1)
    # bob.measure rank: 1 + number of non-mated entries scoring strictly above the best mate.
    rank = 1 + np.sum((scores > best_pos[:, None]) & ~mated, axis=1)
    return rank, best_pos, best_neg, has_mate


def cmc(
    score_matrix: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray, max_rank: int
) -> np.ndarray:
    """Closed-set cumulative match characteristic: ``out[r-1]`` = fraction of mated probes whose
    best mated gallery entry is within rank ``r`` (``r = 1 … max_rank``).

    Rank counts gallery *entries* (bob.measure): 1 + the number of non-mated entries scoring
    strictly higher than the probe's best mated entry, so ties favour the genuine entry.
    Non-mated probes are ignored; raises if there is no mated probe."""
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    rank, _, _, has_mate = _matrix(score_matrix, probe_labels, gallery_labels)
    if not has_mate.any():
        raise ValueError("no probe has a mate in the gallery")
    rank = rank[has_mate]
    return np.array([np.mean(rank <= r) for r in range(1, max_rank + 1)])


def rank1(score_matrix: np.ndarray, probe_labels: np.ndarray, gallery_labels: np.ndarray) -> float:
    """Closed-set rank-1 identification rate (``cmc(...)[0]``)."""
    return float(cmc(score_matrix, probe_labels, gallery_labels, 1)[0])


def detection_identification_rate(
    score_matrix: np.ndarray,
    probe_labels: np.ndarray,
    gallery_labels: np.ndarray,
    threshold: float,
    rank: int = 1,
) -> float:
    """Open-set DIR: fraction of mated probes whose best mated score is ≥ ``threshold`` and
    whose rank (see :func:`cmc`) is ≤ ``rank``. Raises if there is no mated probe."""
    ranks, best_pos, _, has_mate = _matrix(score_matrix, probe_labels, gallery_labels)
    if not has_mate.any():
        raise ValueError("no probe has a mate in the gallery")
    hit = (best_pos >= threshold) & (ranks <= rank)
    return float(np.mean(hit[has_mate]))


def false_alarm_rate(
    score_matrix: np.ndarray,
    probe_labels: np.ndarray,
    gallery_labels: np.ndarray,
    threshold: float,
) -> float:
    """Open-set FAR: fraction of non-mated probes (label absent from the gallery) whose best
    score is ≥ ``threshold``. Raises if every probe is mated."""
    _, _, best_neg, has_mate = _matrix(score_matrix, probe_labels, gallery_labels)
    if has_mate.all():
        raise ValueError("every probe has a mate in the gallery: no non-mated probes")
    return float(np.mean(best_neg[~has_mate] >= threshold))


def _binomial_logpmf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    lgamma = np.frompyfunc(math.lgamma, 1, 1)
    k = np.asarray(k, dtype=np.float64)
    log_choose = math.lgamma(n + 1) - lgamma(k + 1).astype(np.float64) - lgamma(
        n - k + 1).astype(np.float64)
    return log_choose + k * math.log(p) + (n - k) * math.log1p(-p)


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, summed in log space (no underflow at large n)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need n >= 0 and 0 <= p <= 1, got n={n}, p={p}")
    if k < 0:
        return 0.0
    if k >= n or p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    logpmf = _binomial_logpmf(np.arange(k + 1), n, p)
    top = float(logpmf.max())
    return min(1.0, math.exp(top) * float(np.exp(logpmf - top).sum()))


def binomial_interval(errors: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson (exact) two-sided interval for an error rate seen as ``errors``/``trials``.

    With 0 errors the lower end is 0 and the upper end the "rule of three" (≈ 3/n at 95 %).
    """
    if trials <= 0 or not 0 <= errors <= trials:
        raise ValueError(f"need 0 <= errors <= trials and trials > 0, got {errors}/{trials}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1.0 - confidence) / 2.0

    def solve(target: float, k: int) -> float:  # the p at which P(X <= k) == target
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2.0
            if binomial_cdf(k, trials, mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2.0

    lower = 0.0 if errors == 0 else solve(1.0 - tail, errors - 1)
    upper = 1.0 if errors == trials else solve(tail, errors)
    return lower, upper


def max_errors_consistent(trials: int, rate: float, confidence: float = 0.999) -> int:
    """The most errors in ``trials`` that are still consistent with a true error rate ``rate``.

    That is the ``confidence`` quantile of ``Binomial(trials, rate)``: a system whose true rate
    is ``rate`` shows more errors than this in only ``1 - confidence`` of samples. A check that
    asserts ``errors <= max_errors_consistent(n, target)`` fails when the sample shows the target
    is missed, never because one pair landed on the wrong side.
    """
    if trials < 0 or not 0.0 <= rate <= 1.0:
        raise ValueError(f"need trials >= 0 and 0 <= rate <= 1, got {trials}, {rate}")
    k = int(trials * rate)
    while binomial_cdf(k, trials, rate) < confidence:
        k += max(1, int(math.sqrt(trials * rate)) // 8)
    while k > 0 and binomial_cdf(k - 1, trials, rate) >= confidence:
        k -= 1
    return k
