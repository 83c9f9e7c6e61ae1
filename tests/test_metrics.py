"""palmpay.metrics on tiny hand-computed cases (accept when score >= threshold)."""

from __future__ import annotations

import numpy as np
import pytest

from palmpay import metrics

NEG = np.array([0.1, 0.2, 0.3, 0.4])
POS = np.array([0.35, 0.5, 0.6, 0.7])


def test_far_frr() -> None:
    assert metrics.far_frr(NEG, POS, 0.35) == (0.25, 0.0)
    assert metrics.far_frr(NEG, POS, 0.4) == (0.25, 0.25)  # 0.4 >= 0.4 is accepted
    assert metrics.far_frr(NEG, POS, 0.5) == (0.0, 0.25)
    assert metrics.far_frr(NEG, POS, 0.0) == (1.0, 0.0)
    assert metrics.far_frr(NEG, POS, 0.8) == (0.0, 1.0)


def test_eer() -> None:
    assert metrics.eer(NEG, POS) == pytest.approx(0.25)
    assert metrics.eer_threshold(NEG, POS) == pytest.approx(0.4)
    assert metrics.eer([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert metrics.eer([2.0, 3.0], [0.0, 1.0]) == pytest.approx(1.0)


def test_far_threshold_and_ties() -> None:
    t = metrics.far_threshold(NEG, POS, 0.25)  # one false accept allowed: just above 0.3
    assert 0.3 < t <= np.nextafter(0.3, 1.0)
    assert metrics.far_frr(NEG, POS, t)[0] == 0.25
    assert metrics.far_threshold(NEG, POS, 0.0) == np.nextafter(0.4, 1.0)
    assert metrics.far_threshold(NEG, POS, 0.5) == np.nextafter(0.2, 1.0)
    assert metrics.far_threshold(NEG, POS, 1.0) == 0.1
    tied = np.array([0.1, 0.3, 0.3, 0.4])  # 2 allowed, but the two 0.3s go together
    t = metrics.far_threshold(tied, POS, 0.5)
    assert t == np.nextafter(0.3, 1.0)
    assert metrics.far_frr(tied, POS, t)[0] == 0.25
    f32 = metrics.far_threshold(NEG.astype(np.float32), POS, 0.25)
    assert f32 == float(np.nextafter(np.float32(0.3), np.float32(1.0)))
    with pytest.raises(ValueError):
        metrics.far_threshold(NEG, POS, 1.5)


def test_frr_at_far() -> None:
    assert metrics.frr_at_far(NEG, POS, 0.25) == 0.0
    assert metrics.frr_at_far(NEG, POS, 0.0) == 0.25


def test_det() -> None:
    far, frr = metrics.det(NEG, POS, n_points=50)
    assert far.shape == frr.shape == (50,)
    assert far[0] == 1.0 and frr[0] == 0.0 and far[-1] == 0.0 and frr[-1] == 1.0
    assert np.all(np.diff(far) <= 0) and np.all(np.diff(frr) >= 0)
    far, frr, thr = metrics.det(NEG, POS, n_points=5, return_thresholds=True)
    assert thr.shape == (5,) and thr[0] == 0.1
    neg = NEG
    np.testing.assert_array_equal(far, [np.mean(neg >= t) for t in thr])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        metrics.eer([], POS)
    with pytest.raises(ValueError):
        metrics.eer(NEG, [np.nan, 1.0])
    with pytest.raises(ValueError):
        metrics.det(NEG, POS, n_points=1)


def test_large_negatives_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    neg = rng.normal(0.5, 0.03, 2_000_000).astype(np.float32)
    pos = rng.normal(0.75, 0.05, 20_000).astype(np.float32)
    t = metrics.far_threshold(neg, pos, 1e-4)
    assert np.sum(neg >= t) <= 200 < np.sum(neg >= np.nextafter(np.float32(t), np.float32(0)))
    e = metrics.eer(neg, pos)
    far, frr = metrics.far_frr(neg, pos, metrics.eer_threshold(neg, pos))
    assert abs(far - frr) < 1e-3 and e == pytest.approx((far + frr) / 2)


# 3 probes × 4 gallery entries; gallery labels [0, 0, 1, 2]; probe 2 (label 3) is non-mated.
S = np.array(
    [
        [0.9, 0.1, 0.5, 0.2],  # label 0: best mate 0.9, rank 1
        [0.8, 0.7, 0.6, 0.1],  # label 1: mate 0.6 below 0.8 and 0.7, rank 3
        [0.3, 0.2, 0.4, 0.1],  # label 3: not in gallery, best score 0.4
    ]
)
PL = np.array([0, 1, 3])
GL = np.array([0, 0, 1, 2])


def test_cmc_rank1() -> None:
    np.testing.assert_allclose(metrics.cmc(S, PL, GL, 4), [0.5, 0.5, 1.0, 1.0])
    assert metrics.rank1(S, PL, GL) == 0.5
    tie = np.array([[0.5, 0.5, 0.5, 0.1]])  # ties favour the mate (bob.measure)
    assert metrics.rank1(tie, [1], GL) == 1.0
    with pytest.raises(ValueError):
        metrics.cmc(S, [5, 6, 7], GL, 1)
    with pytest.raises(ValueError):
        metrics.cmc(S[:, :3], PL, GL, 1)


def test_open_set() -> None:
    assert metrics.detection_identification_rate(S, PL, GL, 0.65) == 0.5
    assert metrics.detection_identification_rate(S, PL, GL, 0.95) == 0.0
    assert metrics.detection_identification_rate(S, PL, GL, 0.5, rank=3) == 1.0
    assert metrics.false_alarm_rate(S, PL, GL, 0.35) == 1.0
    assert metrics.false_alarm_rate(S, PL, GL, 0.45) == 0.0
    with pytest.raises(ValueError):
        metrics.false_alarm_rate(S[:2], PL[:2], GL, 0.5)


def test_binomial_cdf_matches_exact_sums() -> None:
    from math import comb

    for k in range(11):
        exact = sum(comb(10, i) for i in range(k + 1)) / 1024
        assert metrics.binomial_cdf(k, 10, 0.5) == pytest.approx(exact, rel=1e-12)
    assert metrics.binomial_cdf(-1, 10, 0.5) == 0.0
    # log-space sums: exp(-n p) underflows a naive sum at this size
    assert metrics.binomial_cdf(897, 8_970_000, 1e-4) == pytest.approx(0.5, abs=0.02)


def test_binomial_interval_clopper_pearson() -> None:
    lo, hi = metrics.binomial_interval(0, 1000, 0.95)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 1000), rel=1e-9)  # rule of three
    lo, hi = metrics.binomial_interval(3, 100, 0.95)
    assert (lo, hi) == (pytest.approx(0.006229, abs=1e-5), pytest.approx(0.085171, abs=1e-5))
    lo2, hi2 = metrics.binomial_interval(97, 100, 0.95)  # symmetric in errors <-> successes
    assert (lo2, hi2) == (pytest.approx(1 - hi), pytest.approx(1 - lo))
    with pytest.raises(ValueError):
        metrics.binomial_interval(5, 4)


def test_max_errors_consistent_is_the_binomial_quantile() -> None:
    # Binomial(10, 0.5): P(X <= 8) = 0.9893, P(X <= 9) = 0.9990
    assert metrics.max_errors_consistent(10, 0.5, 0.99) == 9
    assert metrics.max_errors_consistent(10, 0.5, 0.98) == 8
    assert metrics.max_errors_consistent(1000, 0.0) == 0
    # 3 of 29,248 pairs at a 1e-4 target is no evidence of a miss; 10 is
    allowed = metrics.max_errors_consistent(29_248, 1e-4, 0.999)
    assert 3 < allowed < 10
