"""The impostor tail: a peaks-over-threshold model of the highest impostor scores.

A 1:N search at a target false-positive identification rate needs false-accept rates far below
what any dataset can count (1e-4 at a million samples is about 1e-10 per sample), so the upper
tail of the impostor score distribution is modelled and the model is checked on palms the fit
did not see (``models/calibrate_open_set.py``, ``docs/open_set.md``).

Model (extreme-value theory, peaks over threshold): above a high threshold ``u`` (exceeded by a
fraction ``zeta`` of impostor scores), the excess ``x − u`` follows a generalised Pareto
distribution with shape ``xi`` and scale ``sigma``::

    rate(t) = zeta · (1 + xi · (t − u) / sigma) ** (−1 / xi)      (xi ≠ 0)
    rate(t) = zeta · exp(−(t − u) / sigma)                          (xi = 0)

:func:`fit_gpd` fits ``xi, sigma`` by maximum likelihood with ``xi ≥ min_shape``. The default
``min_shape = 0`` never lets the fit end the tail at a finite score (a negative shape has an
upper end point, beyond which the model says "impossible" — not a claim a few hundred palms
support). Pure functions over arrays, like :mod:`palmpay.metrics`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["TailModel", "fit_gpd", "fit_tail", "gpd_nll"]


def gpd_nll(excess: np.ndarray, shape: float, scale: float) -> float:
    """Negative log-likelihood of generalised Pareto excesses (``excess > 0``)."""
    y = np.asarray(excess, np.float64)
    if scale <= 0:
        return math.inf
    if abs(shape) < 1e-9:
        return float(len(y) * math.log(scale) + y.sum() / scale)
    z = 1.0 + shape * y / scale
    if np.any(z <= 0):
        return math.inf
    return float(len(y) * math.log(scale) + (1.0 + 1.0 / shape) * np.log(z).sum())


def fit_gpd(excess: np.ndarray, min_shape: float = 0.0, max_shape: float = 0.6
            ) -> tuple[float, float]:
    """Maximum-likelihood ``(shape, scale)`` of positive excesses over a threshold.

    A coarse grid over shape and log-scale, then two rounds of local refinement; the shape is
    kept in ``[min_shape, max_shape]``.
    """
    y = np.asarray(excess, np.float64)
    if len(y) < 10 or np.any(y <= 0):
        raise ValueError("need at least 10 positive excesses")
    mean = float(y.mean())
    best = (math.inf, 0.0, mean)
    shapes = np.linspace(min_shape, max_shape, 61)
    scales = mean * np.exp(np.linspace(-2.0, 2.0, 81))
    for xi in shapes:
        for sigma in scales:
            value = gpd_nll(y, float(xi), float(sigma))
            if value < best[0]:
                best = (value, float(xi), float(sigma))
    step_xi, step_log = float(shapes[1] - shapes[0]), 0.05
    for _ in range(3):
        _, xi0, sigma0 = best
        for xi in np.clip(np.linspace(xi0 - step_xi, xi0 + step_xi, 21), min_shape, max_shape):
            for sigma in sigma0 * np.exp(np.linspace(-step_log, step_log, 21)):
                value = gpd_nll(y, float(xi), float(sigma))
                if value < best[0]:
                    best = (value, float(xi), float(sigma))
        step_xi, step_log = step_xi / 10, step_log / 10
    return best[1], best[2]


@dataclass(frozen=True)
class TailModel:
    """Upper tail of one impostor score: ``rate(t)`` = P(score ≥ t) for ``t ≥ u``.

    ``samples_per_identity`` is how many enrolled samples each identity of the fit had: the
    modelled score is one identity's fused score (its best sample per frame, averaged over the
    presentation's frames), so :meth:`per_sample_rate` divides by it to give a rate per
    enrolled sample (conservative for identities with fewer samples).
    """

    u: float
    zeta: float
    shape: float
    scale: float
    samples_per_identity: int = 1

    def rate(self, t: float) -> float:
        """Modelled P(score ≥ t); at or below ``u`` it is ``zeta`` (the model holds above)."""
        y = max(float(t) - self.u, 0.0)
        if abs(self.shape) < 1e-9:
            return self.zeta * math.exp(-y / self.scale)
        z = 1.0 + self.shape * y / self.scale
        return 0.0 if z <= 0 else self.zeta * z ** (-1.0 / self.shape)

    def threshold(self, rate: float) -> float:
        """The score exceeded with probability ``rate`` (never below ``u``)."""
        if rate <= 0:
            raise ValueError("rate must be > 0")
        if rate >= self.zeta:
            return self.u
        r = rate / self.zeta
        if abs(self.shape) < 1e-9:
            return self.u - self.scale * math.log(r)
        return self.u + self.scale / self.shape * (r ** (-self.shape) - 1.0)

    def per_sample_rate(self, t: float) -> float:
        """:meth:`rate` per enrolled sample."""
        return self.rate(t) / self.samples_per_identity

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def fit_tail(impostors: np.ndarray, exceed_fraction: float = 1e-3, min_shape: float = 0.0,
             samples_per_identity: int = 1) -> TailModel:
    """Fit a :class:`TailModel` to impostor scores: ``u`` is their ``1 − exceed_fraction``
    quantile, and the excesses above it are fitted by :func:`fit_gpd`."""
    scores = np.asarray(impostors, np.float64).ravel()
    u = float(np.quantile(scores, 1.0 - exceed_fraction))
    excess = scores[scores > u] - u
    shape, scale = fit_gpd(excess, min_shape=min_shape)
    return TailModel(u, len(excess) / len(scores), shape, scale, samples_per_identity)
