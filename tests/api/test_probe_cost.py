"""What a payment costs in model runs: the frames of one ``POST /v1/payments`` are one
presentation, so the palm detector runs once for a held hand (the other frames are tracked),
concurrent payments each track their own hand, and the per-stage CPU split
(:mod:`palmpay.cputime`) sees every stage of the request."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import pytest

from palmpay import cputime, synth
from tests.api.conftest import SEEDS


def _steady(seed: int, frames: int = 4) -> list[bytes]:
    """JPEG frames of a held hand, like a kiosk's checkout upload."""
    clip = synth.presentation_frames(synth.HandIdentity.from_seed(seed), 2 * frames, seed=seed,
                                     enter_fraction=0.0, leave_fraction=0.0)
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
            for f in clip[::2]]


@pytest.fixture(scope="module")
def steady() -> dict[str, list[bytes]]:
    return {who: _steady(SEEDS[who]) for who in ("ann", "bob")}


class Calls:
    """Counts calls of one method of one object (patched through ``monkeypatch``), optionally
    running ``before`` first."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
                 before: Callable[[], None] | None = None) -> None:
        self.count = 0
        self._lock = threading.Lock()
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.count += 1
            if before is not None:
                before()
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


@pytest.mark.parametrize("liveness", ["off", "report"])
def test_a_held_hand_pays_with_one_detection(api_factory, models, monkeypatch, steady,
                                             liveness) -> None:
    api = api_factory(liveness=liveness)
    customer = api.enroll("ann").json()
    extractor = models[0]
    detections = Calls(monkeypatch, extractor.detector, "detect")
    landmarks = Calls(monkeypatch, extractor.landmarker, "run")
    paid = api.pay(frames=steady["ann"])
    assert paid.status_code == 201, paid.text
    assert paid.json()["customer"] == customer["id"]
    assert detections.count == 1
    # liveness off stops at presentation_frames good frames; report looks at all 4
    frames = 4 if liveness == "report" else api.settings.presentation_frames
    assert landmarks.count == frames


def test_concurrent_payments_track_their_own_hands(api, models, monkeypatch, steady) -> None:
    ids = {who: api.enroll(who, card).json()["id"]
           for who, card in (("ann", "visa"), ("bob", "mastercard"))}
    extractor = models[0]
    detections = Calls(monkeypatch, extractor.detector, "detect")
    step = threading.Barrier(2)

    def in_step() -> None:  # both requests fit landmarks in lock-step, frame after frame
        with contextlib.suppress(threading.BrokenBarrierError):
            step.wait(timeout=10)

    Calls(monkeypatch, extractor.landmarker, "run", before=in_step)
    with ThreadPoolExecutor(2) as pool:
        responses = dict(zip(ids, pool.map(lambda who: api.pay(frames=steady[who]), ids),
                             strict=True))
    assert not step.broken
    for who, response in responses.items():
        assert response.status_code == 201, response.text
        assert response.json()["customer"] == ids[who]
    assert detections.count == 2  # one per request: neither lost its track to the other


def test_the_stage_split_of_a_payment(api, steady) -> None:
    assert api.enroll("ann").status_code == 201
    cputime.reset_totals()
    assert api.pay(frames=steady["ann"]).status_code == 201
    split = cputime.totals()
    assert split.calls["decode"] == 4 and split.calls["detection"] == 1
    assert split.calls["landmarks"] == 4 and split.calls["liveness"] == 1
    assert split.calls["search"] == 1 and split.calls["embed"] == 1
    assert {"roi", "quality"} <= set(split.calls)
    assert all(ms >= 0 for ms in split.cpu_ms.values())
    assert split.total_ms == pytest.approx(sum(split.cpu_ms.values()))


def test_measure_sees_only_its_own_thread() -> None:
    done = threading.Event()

    def elsewhere() -> None:
        with cputime.stage("embed"):
            np.linalg.svd(np.ones((50, 50)))
        done.set()

    with cputime.measure() as meter:
        with cputime.stage("detection"), cputime.stage("landmarks"):
            np.linalg.svd(np.ones((80, 80)))
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert done.is_set()
    split = meter.split
    assert split.calls == {"detection": 1, "landmarks": 1}
    assert split.total_ms >= split.staged_ms >= split.cpu_ms["landmarks"] >= 0
    assert set(split.as_dict()) >= {*cputime.STAGES, "other", "total"}


def _large(seed: int, frames: int = 4) -> list[bytes]:
    """1920x1080 JPEG frames of a held hand close to the camera (palm ~800 px)."""
    base = synth.Variation(palm_width_px=800, center=(0.5, 0.62), noise_std=2.0)
    clip = synth.presentation_frames(synth.HandIdentity.from_seed(seed), 2 * frames, seed=seed,
                                     size=(1920, 1080), base=base, enter_fraction=0.0,
                                     leave_fraction=0.0)
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
            for f in clip[::2]]


@pytest.mark.parametrize("reduced", [True, False])
def test_a_large_palm_decodes_the_later_frames_reduced(api_factory, monkeypatch, reduced) -> None:
    from palmpay.api import images

    api = api_factory(checkout_reduced_decode=reduced)
    customer = api.enroll("ann").json()
    scales: list[int] = []
    original = images.decode

    def decode(*args: Any, reduce: int = 1, **kwargs: Any) -> np.ndarray:
        scales.append(reduce)
        return original(*args, reduce=reduce, **kwargs)

    monkeypatch.setattr(images, "decode", decode)
    paid = api.pay(frames=_large(SEEDS["ann"]))
    assert paid.status_code == 201, paid.text
    assert paid.json()["customer"] == customer["id"]
    assert not paid.headers["PalmPay-Liveness"].startswith("attack")
    assert scales == ([1, 2, 2, 2] if reduced else [1, 1, 1, 1])


@pytest.mark.parametrize("liveness", ["off", "report"])
def test_frames_past_the_good_ones_are_not_decoded_without_liveness(api_factory, steady,
                                                                     liveness) -> None:
    broken = steady["ann"][0][:-3000]  # a readable header, then a cut scan
    assert cv2.imdecode(np.frombuffer(broken, np.uint8), cv2.IMREAD_COLOR) is None
    api = api_factory(liveness=liveness)
    assert api.enroll("ann").status_code == 201
    r = api.pay(frames=[*steady["ann"][:3], broken])
    if liveness == "off":  # 3 good frames (presentation_frames): the 4th is never decoded
        assert r.status_code == 201, r.text
    else:  # liveness looks at every frame
        assert r.status_code == 422 and r.json()["code"] == "invalid_image", r.text
