"""``POST /v1/payments`` with the liveness check (``PALMPAY_LIVENESS``).

With ``enforce`` a still frame replayed as a video (a frozen sequence) answers 422
``presentation_attack`` — for an enrolled palm and for a stranger's alike, so the answer says
nothing about the match — while frames of the same hand articulating pay. With ``report`` both
pay and the ``PalmPay-Liveness`` header says what the check found.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from palmpay.api.catalogue import CATALOGUE
from scripts.security.build_attacks import articulated_clip, still_replay
from tests.api.conftest import SEEDS, assert_problem


def _liveness(response) -> str:
    return response.headers["PalmPay-Liveness"]


def _jpegs(frames: list[np.ndarray]) -> list[bytes]:
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes() for f in frames]


@pytest.fixture(scope="module")
def clips() -> dict[str, list[bytes]]:
    out = {}
    for who in ("ann", "stranger"):
        live = articulated_clip(SEEDS[who], 4)
        out[who] = _jpegs(live)
        out[who + "_frozen"] = _jpegs(still_replay(live[0], 4, 7))
    return out


def test_enforce_refuses_a_frozen_replay_and_pays_a_live_hand(api_factory, clips) -> None:
    api = api_factory(liveness="enforce")
    assert api.enroll("ann").status_code == 201
    body = assert_problem(api.pay(frames=clips["ann_frozen"]), 422, "presentation_attack")
    assert "change" in body["cues"]
    stranger = assert_problem(api.pay(frames=clips["stranger_frozen"]), 422,
                              "presentation_attack")
    assert stranger.keys() == body.keys()
    paid = api.pay(frames=clips["ann"])
    assert paid.status_code == 201, paid.text
    assert paid.json()["status"] == "succeeded" and not _liveness(paid).startswith("attack")
    assert CATALOGUE["presentation_attack"].status == 422


def test_report_pays_and_says_what_it_saw(api_factory, clips) -> None:
    api = api_factory(liveness="report")
    assert api.enroll("ann").status_code == 201
    frozen = api.pay(frames=clips["ann_frozen"])
    assert frozen.status_code == 201, frozen.text
    assert _liveness(frozen).startswith("attack; score=")
    assert _liveness(api.pay(frames=clips["ann"])).split(";")[0] in ("live", "unsure")


def test_off_runs_no_check(api_factory, clips) -> None:
    api = api_factory(liveness="off")
    assert api.enroll("ann").status_code == 201
    frozen = api.pay(frames=clips["ann_frozen"])
    assert frozen.status_code == 201 and "PalmPay-Liveness" not in frozen.headers
