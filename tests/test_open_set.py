"""The open-set decision: the impostor tail (palmpay.tail), its check (palmpay.openset), the
operating point (palmpay.decision.OperatingPoint) and the open-set protocol
(palmpay.evaluate_open_set, ``palmpay eval --protocol open-set``).

The pure tests run everywhere; the real-data ones (marked slow) check the stored tail on the
palms its fit did not see and the issue's Done-when on tongji-dev and coep-dev.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from palmpay import assets, openset
from palmpay.cli import main as cli_main
from palmpay.decision import OperatingPoint
from palmpay.evaluate_open_set import (
    FIXED,
    OPERATING_POINT,
    _gallery,
    _stranger_groups,
    evaluate_open_set,
    plot_open_set,
)
from palmpay.tail import TailModel, fit_gpd, fit_tail
from tests.conftest import REPO, shared_dataset

SAME_PALM_COEP = {"153": "077", "157": "155"}  # label noise, see models/calibrate.py
slow = pytest.mark.slow


def _gpd(shape: float, scale: float, n: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).random(n)
    if shape == 0:
        return -scale * np.log(u)
    return scale / shape * (u ** -shape - 1.0)


# --- palmpay.tail --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [0.0, 0.15, 0.3])
def test_fit_gpd_recovers_shape_and_scale(shape: float) -> None:
    fitted_shape, fitted_scale = fit_gpd(_gpd(shape, 0.005, 20_000, seed=1))
    assert fitted_shape == pytest.approx(shape, abs=0.04)
    assert fitted_scale == pytest.approx(0.005, rel=0.06)


def test_fit_gpd_needs_positive_excesses() -> None:
    with pytest.raises(ValueError):
        fit_gpd(np.ones(5))
    with pytest.raises(ValueError):
        fit_gpd(np.r_[np.ones(20), 0.0])


@pytest.mark.parametrize("shape", [0.0, 0.2])
def test_tail_threshold_and_rate_are_inverse(shape: float) -> None:
    tail = TailModel(u=0.61, zeta=1e-3, shape=shape, scale=0.005, samples_per_identity=10)
    for rate in (5e-4, 1e-5, 1e-7, 1e-10):
        threshold = tail.threshold(rate)
        assert threshold > tail.u
        assert tail.rate(threshold) == pytest.approx(rate, rel=1e-9)
        assert tail.per_sample_rate(threshold) == pytest.approx(rate / 10, rel=1e-9)
    assert tail.threshold(1e-3) == tail.threshold(0.5) == tail.u  # the model holds above u
    assert tail.rate(0.0) == tail.zeta
    with pytest.raises(ValueError):
        tail.threshold(0.0)


def test_fit_tail_puts_u_at_the_quantile() -> None:
    rng = np.random.default_rng(2)
    scores = np.r_[rng.uniform(0.4, 0.6, 200_000), 0.6 + _gpd(0.0, 0.004, 2_000, seed=3)]
    tail = fit_tail(scores, exceed_fraction=5e-3, samples_per_identity=4)
    assert tail.zeta == pytest.approx(5e-3, rel=0.01)
    assert tail.u == pytest.approx(np.quantile(scores, 1 - 5e-3))
    assert tail.samples_per_identity == 4
    assert tail.rate(0.612) == pytest.approx(np.mean(scores >= 0.612), rel=0.3)


# --- palmpay.openset -----------------------------------------------------------------------


def test_presentations_groups_and_combinations() -> None:
    labels = ["a"] * 7 + ["b"] * 3
    sessions = [1, 1, 1, 2, 2, 2, 2, 1, 1, 1]
    groups = openset.presentations(labels, sessions, 2)
    assert groups.tolist() == [[0, 1], [3, 4], [5, 6], [7, 8]]
    every = openset.presentations(labels, sessions, 3, every=True)
    assert len(every) == math.comb(3, 3) + math.comb(4, 3) + math.comb(3, 3)
    assert all(len({labels[i] for i in g}) == 1 and len({sessions[i] for i in g}) == 1
               for g in every.tolist())
    assert openset.presentations(["a"], [1], 3).shape == (0, 3)


def test_frame_identity_and_fused_scores() -> None:
    scores = np.asarray([[0.5, 0.7, 0.6], [0.9, 0.1, 0.2]], np.float32)
    frame = openset.frame_identity_scores(scores, ["x", "x", "y"], ["x", "y"])
    np.testing.assert_allclose(frame, [[0.7, 0.6], [0.9, 0.2]])
    fused = openset.fused_scores(frame, np.asarray([[0, 1]]))
    np.testing.assert_allclose(fused, [[0.8, 0.4]], rtol=1e-6)


def test_impostor_scores_drop_own_identity_and_cluster_by_pair() -> None:
    fused = np.arange(12, dtype=np.float32).reshape(4, 3)
    owners = ["a", "a", "b", "z"]
    scores, pairs = openset.impostor_scores(fused, owners, ["a", "b", "c"])
    assert scores.tolist() == [1, 2, 4, 5, 6, 8, 9, 10, 11]
    # the two presentations of "a" against "b" (and against "c") share a cluster
    assert pairs[0] == pairs[2] and pairs[1] == pairs[3]
    assert len(set(pairs.tolist())) == 7


def _synthetic_impostors(tail: TailModel, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true upper tail is exactly ``tail``, in clusters of 10."""
    rng = np.random.default_rng(seed)
    above = rng.random(n) < tail.zeta
    scores = rng.uniform(0.3, tail.u, n)
    scores[above] = tail.u + _gpd(tail.shape, tail.scale, int(above.sum()), seed + 1)
    return scores, np.arange(n) // 10


def test_check_tail_holds_when_the_model_is_right() -> None:
    truth = TailModel(u=0.6, zeta=1e-2, shape=0.0, scale=0.005)
    scores, clusters = _synthetic_impostors(truth, 2_000_000, seed=4)
    checks = openset.check_tail(truth, scores, clusters, rates=(1e-3, 1e-4))
    assert all(c.holds for c in checks)
    assert checks[0].resolved  # 2,000 errors pin the rate to within ×2
    assert checks[0].errors == pytest.approx(2_000, rel=0.1)
    assert [c.threshold for c in checks] == [truth.threshold(1e-3), truth.threshold(1e-4)]


@pytest.mark.parametrize("factor", [5.0, 0.2])
def test_check_tail_fails_when_the_model_is_five_times_off(factor: float) -> None:
    truth = TailModel(u=0.6, zeta=1e-2, shape=0.0, scale=0.005)
    scores, clusters = _synthetic_impostors(truth, 2_000_000, seed=5)
    wrong = TailModel(u=0.6, zeta=1e-2 * factor, shape=0.0, scale=0.005)
    checks = openset.check_tail(wrong, scores, clusters, rates=(1e-3, 1e-4))
    assert not any(c.holds for c in checks)
    assert all(c.ratio == pytest.approx(1 / factor, rel=0.3) for c in checks)


def test_check_tail_with_no_error_gives_the_one_sided_bound() -> None:
    tail = TailModel(u=0.6, zeta=1e-2, shape=0.0, scale=0.005)
    scores = np.full(1000, 0.5)
    (check,) = openset.check_tail(tail, scores, np.arange(1000) // 10, rates=(1e-4,))
    assert (check.errors, check.clusters, check.low) == (0, 100, 0.0)
    assert check.high == pytest.approx(0.036, abs=0.002)  # ~ 3.7 / 100 clusters


# --- palmpay.decision.OperatingPoint -------------------------------------------------------

OPEN_SET = {
    "tail": {"u": 0.61, "zeta": 1e-3, "shape": 0.0, "scale": 0.005, "samples_per_identity": 10},
    "genuine_quantiles": [[0.001, 0.64], [0.01, 0.67], [0.02, 0.69], [0.1, 0.73], [0.5, 0.79]],
}


def test_threshold_rises_with_the_gallery_and_keeps_the_target() -> None:
    point = OperatingPoint.from_calibration(OPEN_SET, 1e-4, 0.02)
    sizes = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000]
    thresholds = [point.threshold(n) for n in sizes]
    assert thresholds == sorted(thresholds) and len(set(thresholds)) == len(sizes)
    for n, t in zip(sizes, thresholds, strict=True):
        assert point.fpir(t, n) == pytest.approx(1e-4, rel=1e-6)
    stricter = OperatingPoint.from_calibration(OPEN_SET, 1e-5, 0.02)
    assert stricter.threshold(1_000) > point.threshold(1_000)
    assert point.fpir(point.threshold(1_000), 10_000) > 1e-4  # a grown gallery breaks it


def test_n_safe_is_where_fnir_reaches_the_ceiling() -> None:
    point = OperatingPoint.from_calibration(OPEN_SET, 1e-4, 0.02)
    n_safe = point.n_safe
    assert 1 < n_safe < 2**62
    assert point.fnir(point.threshold(n_safe)) <= 0.02 + 1e-9
    assert point.fnir(point.threshold(int(n_safe * 1.5))) > 0.02
    assert not point.needs_narrowing(n_safe) and point.needs_narrowing(n_safe + 1)
    assert OperatingPoint.from_calibration(OPEN_SET, 1e-5, 0.02).n_safe < n_safe
    assert OperatingPoint.from_calibration(OPEN_SET, 1e-4, 0.05).n_safe > n_safe
    assert point.fnir(0.5) == 0.001 and point.fnir(0.9) == 0.5  # clamped at the ends
    described = point.describe(1_000)
    assert described["n_safe"] == n_safe and described["narrowing_required"] is False


def test_n_safe_override() -> None:
    point = OperatingPoint.from_calibration(OPEN_SET, 1e-4, 0.02, n_safe_override=0)
    assert point.n_safe == 0 and point.needs_narrowing(1) and not point.needs_narrowing(0)
    assert point.threshold(10) == OperatingPoint.from_calibration(
        OPEN_SET, 1e-4, 0.02).threshold(10)


def test_stored_operating_point_is_stricter_than_the_pair_threshold() -> None:
    meta = json.loads((assets.path("models") / "compcode.json").read_text())
    point = OperatingPoint.from_calibration(meta["open_set"], 1e-4, 0.02)
    assert point.threshold(1_500) > meta["threshold"]
    assert point.fnir(point.threshold(1_500)) < 0.01
    assert point.n_safe > 1_000_000


# --- palmpay.evaluate_open_set helpers -----------------------------------------------------


def test_stranger_groups_round_robin_one_session_never_twice() -> None:
    rows = {"p": {1: [0, 1, 2, 3], 2: [4, 5, 6]}, "q": {1: [7, 8, 9], 2: [10, 11]}}
    groups = _stranger_groups(rows, 6, 3, seed=0)
    assert len(groups) == len(set(groups)) == 6
    session = {i: (p, s) for p, by in rows.items() for s, r in by.items() for i in r}
    assert all(len({session[i] for i in g}) == 1 for g in groups)
    assert sum(session[g[0]][0] == "q" for g in groups) == 1  # q has one group of 3: taken
    assert groups == _stranger_groups(rows, 6, 3, seed=0)
    assert len(_stranger_groups(rows, None, 3, seed=0)) == 12 // 3
    with pytest.raises(ValueError):
        _stranger_groups(rows, 7, 3, seed=0)  # 4 + 1 + 1 groups exist
    sessionless = {"p": {None: [0, 1, 2, 3]}, "q": {None: [4, 5, 6]}}
    assert _stranger_groups(sessionless, None, 3, seed=0) == [(0, 1, 2), (4, 5, 6)]


def test_gallery_counts_fnir_misidentification_and_fpir() -> None:
    point = OperatingPoint.from_calibration(OPEN_SET, 1e-4, 0.02)
    genuine = np.asarray([[0.9, 0.1, 0.1], [0.2, 0.5, 0.1], [0.8, 0.7, 0.1], [0.1, 0.1, 0.9]])
    owners = np.asarray([0, 1, 1, 2])
    strangers = np.asarray([[0.1, 0.1, 0.9], [0.1, 0.1, 0.2]])
    whole = _gallery(OPERATING_POINT, 3, 30, 0.6, point, genuine, owners, strangers)
    assert (whole.genuine, whole.missed, whole.misidentified) == (4, 2, 1)
    assert (whole.strangers, whole.strangers_accepted, whole.fpir) == (2, 1, 0.5)
    assert whole.fpir_low < 0.5 < whole.fpir_high
    assert whole.predicted_fpir == pytest.approx(point.fpir(0.6, 30))
    two = _gallery(FIXED, 2, 20, 0.6, point, genuine, owners, strangers)
    assert (two.genuine, two.missed, two.misidentified, two.strangers_accepted) == (3, 2, 1, 0)


# --- real data -----------------------------------------------------------------------------


def _calibrate_open_set():
    path = REPO / "models" / "calibrate_open_set.py"
    spec = importlib.util.spec_from_file_location("calibrate_open_set", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@slow
def test_stored_tail_holds_on_the_held_out_palms_and_is_reproducible() -> None:
    data = shared_dataset("tongji-dev").parent
    stored = json.loads((assets.path("models") / "compcode.json").read_text())["open_set"]
    match = re.search(r"split seed (\d+)", stored["fit"])
    assert match, stored["fit"]
    calibrate = _calibrate_open_set()
    scores = calibrate.load_scores(data)
    tail, checks, _ = calibrate.fit_and_check(scores, int(match.group(1)))
    failed = [c for c in checks if not c.holds]
    assert not failed, f"the stored tail is off on the held-out palms: {failed}"
    assert tail.as_dict() == pytest.approx(stored["tail"], rel=1e-6)
    assert [c.errors for c in checks] == [c["errors"] for c in stored["check"]]
    genuine = np.sort(scores.genuine())
    assert [float(np.quantile(genuine, f)) for f, _ in stored["genuine_quantiles"]] == \
        pytest.approx([s for _, s in stored["genuine_quantiles"]], rel=1e-6)


@slow
def test_tongji_open_set_at_the_default_operating_point(tmp_path: Path) -> None:
    report = evaluate_open_set(shared_dataset("tongji-dev"), roi="given")
    overall = report.overall
    assert (overall.identities, overall.samples) == (150, 1_500)
    assert (overall.strangers, overall.genuine) == (1_000, 450)
    assert overall.strangers_accepted == 0, overall
    assert overall.misidentified == 0, overall
    assert overall.missed <= 0.01 * overall.genuine, overall
    at_point = report.rule(OPERATING_POINT)
    assert [g.identities for g in at_point] == [10, 20, 50, 100, 150]
    assert all(g.strangers_accepted == 0 and g.misidentified == 0 for g in at_point)
    assert [g.threshold for g in at_point] == sorted(g.threshold for g in at_point)
    # the old fixed rule on nested galleries: strangers accepted can only grow with N
    accepted = [g.strangers_accepted for g in report.rule(FIXED)]
    assert accepted == sorted(accepted)
    plot_open_set(report, tmp_path / "open_set.png")
    assert (tmp_path / "open_set.png").stat().st_size > 10_000


@slow
def test_coep_detected_open_set() -> None:
    report = evaluate_open_set(shared_dataset("coep-dev"), roi="detect", aliases=SAME_PALM_COEP)
    overall = report.overall
    assert (report.palms, report.enrolled_palms, report.stranger_palms) == (59, 29, 30)
    assert overall.strangers == 30 and overall.genuine == 29
    assert overall.strangers_accepted == 0, overall
    assert all(g.misidentified == 0 for g in report.galleries), report.galleries


@slow
def test_cli_open_set_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "fpir.png"
    assert cli_main(["eval", str(shared_dataset("coep-dev")), "--protocol", "open-set",
                     "--json", "--plot", str(plot), "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["overall"]["rule"] == OPERATING_POINT
    assert out["overall"]["misidentified"] == 0
    assert {g["rule"] for g in out["galleries"]} == {OPERATING_POINT, FIXED}
    assert plot.stat().st_size > 10_000
