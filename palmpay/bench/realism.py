"""How the synthetic distractors compare with real impostors, against the real probes.

:func:`compare` scores a sample of the real genuine probes (tongji session 2) against four
groups of gallery rows and summarises each group's cosine (the shortlist score) and code score
(the decision score, :func:`palmpay.match.code_scores`): the probe's own palm (genuine), the real
palms of other people (tongji + coep: real impostors), rendered distractors and model
distractors. If the synthetic ones sit well below the real impostors they make the gallery
easier than a real one of the same size; above, harder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from palmpay.bench.gallery import TemplateSet

__all__ = ["DistributionRow", "compare"]

QUANTILES = (0.5, 0.99, 0.999)
#: Values of each group kept for the histogram (a random subset of the pairs).
SAMPLE = 2_000


@dataclass(frozen=True)
class DistributionRow:
    """One group's scores against the probes: quantiles of cosine and of code score."""

    group: str
    pairs: int
    cosine: list[float]  # QUANTILES, then the maximum
    code: list[float]
    above_threshold: float  # share of code scores at or above the decision threshold
    cosine_sample: list[float]  # up to SAMPLE values, for the plot
    code_sample: list[float]


def _row(group: str, cosines: np.ndarray, codes: np.ndarray, threshold: float,
         rng: np.random.Generator) -> DistributionRow:
    def q(x: np.ndarray) -> list[float]:
        return [float(v) for v in np.quantile(x, QUANTILES)] + [float(x.max())]

    pick = rng.choice(cosines.size, size=min(cosines.size, SAMPLE), replace=False)
    return DistributionRow(group, int(cosines.size), q(cosines), q(codes),
                           float(np.mean(codes >= threshold)),
                           cosines.ravel()[pick].round(4).tolist(),
                           codes.ravel()[pick].round(4).tolist())


def compare(real_gallery: TemplateSet, rendered: TemplateSet, model: TemplateSet,
            probes: TemplateSet, threshold: float, max_shift: int, probe_count: int = 200,
            group_size: int = 2000, seed: int = 0) -> list[DistributionRow]:
    """The four rows (module docstring), on ``probe_count`` probes and up to ``group_size``
    rows per synthetic group."""
    from palmpay.match import code_scores

    rng = np.random.default_rng(seed)
    p = probes.take(rng.choice(len(probes), min(probe_count, len(probes)), replace=False))
    real_cos = p.vectors @ real_gallery.vectors.T
    real_code = code_scores(p.codes, real_gallery.codes, max_shift=max_shift)
    same = p.palms[:, None] == real_gallery.palms[None, :]
    rows = [_row("genuine (same real palm)", real_cos[same], real_code[same], threshold, rng),
            _row("real impostors (other real palms)", real_cos[~same], real_code[~same],
                 threshold, rng)]
    for name, group in (("rendered distractors", rendered), ("model distractors", model)):
        g = group.take(rng.choice(len(group), min(group_size, len(group)), replace=False))
        rows.append(_row(name, p.vectors @ g.vectors.T,
                         code_scores(p.codes, g.codes, max_shift=max_shift), threshold, rng))
    return rows
