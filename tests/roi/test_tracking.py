"""Tracking a hand through the frames of one presentation (:meth:`PalmRoiExtractor.track`
with a :class:`HandTrack`): the detector runs once for a held hand, again when the track is
lost, and tracks of different presentations do not mix."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from palmpay import synth
from palmpay.config import Settings
from palmpay.roi import (
    Hand,
    HandTrack,
    PalmRoiExtractor,
    RoiStatus,
    landmarks_rect,
    lost_track,
    palm_width_px,
)
from palmpay.roi.extractor import TRACK_MAX_SHIFT, TRACK_MAX_TURN_DEG


@pytest.fixture(scope="module")
def extractor() -> PalmRoiExtractor:
    return PalmRoiExtractor(Settings())


def held(seed: int, frames: int = 4) -> list[np.ndarray]:
    """``frames`` frames of a held hand (every other video frame of a presentation)."""
    clip = synth.presentation_frames(synth.HandIdentity.from_seed(seed), 2 * frames, seed=seed,
                                     enter_fraction=0.0, leave_fraction=0.0)
    return clip[::2]


@pytest.fixture(scope="module")
def ann() -> list[np.ndarray]:
    return held(21)


@pytest.fixture(scope="module")
def bob() -> list[np.ndarray]:
    return held(22)


def test_a_held_hand_is_detected_once(extractor, ann) -> None:
    track = HandTrack()
    results = [extractor.track(frame, track) for frame in ann]
    assert [r.status for r in results] == [RoiStatus.OK] * len(ann)
    assert (track.frames, track.detections) == (len(ann), 1)


def test_tracked_landmarks_agree_with_a_fresh_detection(extractor, ann) -> None:
    track = HandTrack()
    for frame in ann:
        tracked = extractor.track(frame, track)
        still = extractor.extract(frame)
        assert tracked.ok and still.ok and tracked.hand and still.hand
        assert tracked.hand.handedness == still.hand.handedness
        error = np.linalg.norm(tracked.hand.landmarks[:, :2] - still.hand.landmarks[:, :2],
                               axis=1).mean()
        # Two detections of one hand differ by ~0.02 palm widths; tracking is no worse.
        assert error < 0.06 * palm_width_px(still.hand)


def test_interleaved_presentations_keep_their_own_tracks(extractor, ann, bob) -> None:
    alone = {}
    for name, frames in (("ann", ann), ("bob", bob)):
        track = HandTrack()
        alone[name] = [extractor.track(f, track).hand for f in frames]
    tracks = {"ann": HandTrack(), "bob": HandTrack()}
    mixed: dict[str, list[Hand | None]] = {"ann": [], "bob": []}
    for a, b in zip(ann, bob, strict=True):  # one extractor, frames of both in turn
        mixed["ann"].append(extractor.track(a, tracks["ann"]).hand)
        mixed["bob"].append(extractor.track(b, tracks["bob"]).hand)
    for name in mixed:
        assert tracks[name].detections == 1
        for got, want in zip(mixed[name], alone[name], strict=True):
            assert got is not None and want is not None
            np.testing.assert_array_equal(got.landmarks, want.landmarks)


def test_a_frame_without_the_hand_loses_the_track(extractor, ann) -> None:
    track = HandTrack()
    empty = synth.render_no_hand(5, (640, 480))
    statuses = [extractor.track(f, track).status for f in (ann[0], empty, ann[1])]
    assert statuses == [RoiStatus.OK, RoiStatus.NO_HAND, RoiStatus.OK]
    assert track.detections == 3  # the empty frame: tracked fit lost, detector found nothing


def test_a_jump_to_another_pose_runs_the_detector_and_gives_the_still_result(extractor) -> None:
    identity = synth.HandIdentity.from_seed(31)
    first = synth.Variation(rotation_deg=-15, palm_width_px=150, center=(0.4, 0.65))
    other = replace(first, rotation_deg=15, palm_width_px=200, center=(0.6, 0.7))
    frames = [synth.render_hand(identity, v) for v in (first, other)]
    track = HandTrack()
    tracked = [extractor.track(f, track) for f in frames]
    assert track.detections == 2
    still = extractor.extract(frames[1])
    assert tracked[1].status == still.status == RoiStatus.OK
    assert tracked[1].hand is not None and still.hand is not None
    np.testing.assert_array_equal(tracked[1].hand.landmarks, still.hand.landmarks)


def test_the_extractors_own_track_is_reset(extractor, ann) -> None:
    extractor.reset()
    assert extractor.track(ann[0]).ok
    extractor.reset()
    assert extractor.track(ann[1]).ok


def _hand(landmarks: np.ndarray, presence: float = 0.99) -> Hand:
    return Hand(landmarks.astype(np.float32), "right", 0.9, presence)


def _landmarks() -> np.ndarray:
    rng = np.random.default_rng(4)
    points = np.zeros((21, 3))
    points[:, :2] = rng.uniform(150, 250, (21, 2))
    points[0, :2] = (200, 300)  # wrist below the rest: fingers up
    return points


def _moved(points: np.ndarray, dx: float = 0.0, scale: float = 1.0, turn_deg: float = 0.0
           ) -> np.ndarray:
    centre = points[:, :2].mean(axis=0)
    c, s = math.cos(math.radians(turn_deg)), math.sin(math.radians(turn_deg))
    out = points.copy()
    out[:, :2] = (points[:, :2] - centre) @ np.array([[c, s], [-s, c]]) * scale + centre
    out[:, 0] += dx
    return out


def test_lost_track_reasons() -> None:
    points = _landmarks()
    crop = landmarks_rect(points)
    assert lost_track(_hand(points), crop, 0.5) == ""
    assert lost_track(_hand(_moved(points, dx=0.05 * crop.width)), crop, 0.5) == ""
    assert lost_track(_hand(points, presence=0.2), crop, 0.5) == "presence 0.20"
    far = _moved(points, dx=2 * TRACK_MAX_SHIFT * crop.width)
    assert lost_track(_hand(far), crop, 0.5).startswith("hand moved")
    assert lost_track(_hand(_moved(points, scale=1.5)), crop, 0.5).startswith("hand scaled")
    turned = _moved(points, turn_deg=2 * TRACK_MAX_TURN_DEG)
    assert lost_track(_hand(turned), crop, 0.5).startswith("hand turned")


def test_rects_and_hands_move_to_a_reduced_frame_and_back() -> None:
    from palmpay.roi import RotatedRect, scale_hand, scale_rect

    rect = RotatedRect(101.0, 57.5, 80.0, 80.0, 0.3)
    half = scale_rect(rect, 0.5)
    assert (half.cx, half.cy, half.width, half.angle) == (50.25, 28.5, 40.0, 0.3)
    assert scale_rect(half, 2.0) == rect
    hand = _hand(_landmarks())
    back = scale_hand(scale_hand(hand, 0.25), 4.0)
    np.testing.assert_allclose(back.landmarks, hand.landmarks, atol=1e-4)
    assert palm_width_px(scale_hand(hand, 0.5)) == pytest.approx(palm_width_px(hand) / 2,
                                                                  rel=1e-5)


def test_reduced_decode_keeps_the_palm_at_1_5_px_per_roi_px() -> None:
    from palmpay.api.palms import reduction_for

    assert [reduction_for(w) for w in (120, 240, 479, 480, 959, 960, 1920, 5000)] == [
        1, 1, 1, 2, 2, 4, 8, 8]
