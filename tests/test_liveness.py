"""Liveness (palmpay/liveness.py) on small generated presentations.

Each attack instrument of ``scripts/security/build_attacks.py`` (the ones the measurement in
docs/security/liveness.md uses), built from a synthetic hand, must be flagged by the cue meant
for it; a synthetic hand that articulates must pass. Frames go through the real ROI stage for
their landmarks, as at the checkout.
"""

from __future__ import annotations

import numpy as np
import pytest

from palmpay.liveness import Liveness, assess_liveness
from palmpay.roi import PalmRoiExtractor
from scripts.security.build_attacks import (
    articulated_clip,
    loop,
    rigid_clip,
    rigid_print,
    screen_replay,
    still_replay,
    synth_still,
)

SEED = 3  # the synthetic hand every presentation shows
FRAMES = 4  # what the checkout sends


@pytest.fixture(scope="module")
def extractor() -> PalmRoiExtractor:
    return PalmRoiExtractor()


@pytest.fixture(scope="module")
def judge(extractor):
    def run(frames: list[np.ndarray], **kwargs: bool) -> Liveness:
        hands = [extractor.extract(f).hand for f in frames]
        assert sum(h is not None for h in hands) >= 2, "the hand must be found for the test"
        return assess_liveness(frames, hands, **kwargs)
    return run


@pytest.fixture(scope="module")
def live() -> list[np.ndarray]:
    return articulated_clip(SEED, FRAMES)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return synth_still(SEED)


def test_an_articulating_hand_is_live(judge, live) -> None:
    result = judge(live)
    assert result.decision == "live" and result.failed == (), result.describe()
    assert result.score >= 0.5
    assert judge(live, require_articulation=True).decision == "live"


def test_a_still_photo_replayed_as_a_video_is_an_attack(judge, photo) -> None:
    result = judge(still_replay(photo, FRAMES, 1))
    assert result.attack and "change" in result.failed, result.describe()
    assert result.score < 0.5


def test_a_looping_sequence_is_an_attack(judge, live) -> None:
    # Two live frames played in a loop: every pair of frames moves, but some repeat.
    result = judge(loop(live, FRAMES, 2))
    assert result.attack and "change" in result.failed, result.describe()


def test_a_phone_screen_is_an_attack_by_its_moire(judge, photo) -> None:
    result = judge(screen_replay(photo, FRAMES, 3, defocus=0.5))
    assert result.attack and "moire" in result.failed, result.describe()


def test_a_rigidly_moved_print_shows_no_articulation(judge, photo) -> None:
    frames = rigid_print(photo, FRAMES, 4)
    result = judge(frames)
    assert result.change is not None and result.change > 1.0  # it moved: not frozen
    assert result.failed == ("nonrigid",) and result.decision == "unsure", result.describe()
    assert judge(frames, require_articulation=True).attack


def test_a_rigid_synthetic_clip_is_geometrically_a_print(judge) -> None:
    # palmpay.synth renders a flat canvas: without articulation it moves like a print.
    result = judge(rigid_clip(SEED, FRAMES))
    assert result.failed == ("nonrigid",) and result.decision == "unsure", result.describe()


def test_fewer_than_two_hands_is_unsure(extractor, live) -> None:
    hand = extractor.extract(live[0]).hand
    result = assess_liveness(live[:2], [hand, None])
    assert result.decision == "unsure" and result.frames == 1
    assert result.change is None and result.nonrigid is None
    with pytest.raises(ValueError, match="frames but"):
        assess_liveness(live[:2], [hand])
