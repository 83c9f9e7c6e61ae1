"""Unit tests of palmpay.roi that need no real data: model I/O, decoding helpers, ROI geometry."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from palmpay.config import Settings
from palmpay.roi import (  # internals under test
    Detection,
    Hand,
    HandLandmarker,
    PalmDetector,
    PalmRoiExtractor,
    RoiResult,
    RoiStatus,
    RotatedRect,
    detection_rect,
    landmarks_rect,
    palm_roi,
    pose_problem,
    rect_to_crop_matrix,
    ssd_anchors,
    weighted_nms,
)

CANVAS = 400


@pytest.fixture(scope="module")
def extractor() -> PalmRoiExtractor:
    return PalmRoiExtractor(Settings())


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """A smooth random BGR texture: every place in it looks different."""
    rng = np.random.default_rng(1)
    low = rng.integers(0, 256, (CANVAS // 8, CANVAS // 8, 3), dtype=np.uint8)
    return cv2.GaussianBlur(
        cv2.resize(low, (CANVAS, CANVAS), interpolation=cv2.INTER_CUBIC), (5, 5), 0
    )


def upright_right_hand(handedness: str = "right") -> Hand:
    """Fingers up, index base right of the pinky base (a right palm seen by the camera)."""
    landmarks = np.zeros((21, 3), np.float32)
    landmarks[:, :2] = (200, 200)
    landmarks[0, :2] = (200, 320)  # wrist
    landmarks[5, :2] = (260, 170)  # index MCP
    landmarks[9, :2] = (200, 165)  # middle MCP
    landmarks[13, :2] = (150, 170)  # ring MCP
    landmarks[17, :2] = (140, 175)  # pinky MCP
    for tip, mcp in zip((8, 12, 16, 20), (5, 9, 13, 17), strict=True):
        landmarks[tip, :2] = landmarks[mcp, :2] + (0, -90)  # straight fingers, pointing up
    return Hand(landmarks=landmarks, handedness=handedness, score=0.95, presence=0.99)


def rotate_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    out = points.copy()
    out[:, :2] = points[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    return out


# --- models -------------------------------------------------------------------------------------


def test_palm_detector_io_read_from_session() -> None:
    detector = PalmDetector(Settings())
    inputs = detector._session.get_inputs()
    assert [i.shape for i in inputs] == [[1, 3, 192, 192]]
    shapes = {o.name: o.shape for o in detector._session.get_outputs()}
    assert shapes == {"regressors": [1, 2016, 18], "scores": [1, 2016, 1]}
    assert detector.size == 192


@pytest.mark.parametrize("name", ["palm_detection_lite.onnx", "palm_detection_full.onnx"])
def test_both_palm_detectors_load(name: str) -> None:
    assert PalmDetector(Settings(palm_detector=name)).size == 192


@pytest.mark.parametrize("name", ["hand_landmark_lite.onnx", "hand_landmark_full.onnx"])
def test_hand_landmarker_io_read_from_session(name: str) -> None:
    landmarker = HandLandmarker(Settings(hand_landmarker=name))
    assert landmarker.size == 224
    assert [i.shape for i in landmarker._session.get_inputs()] == [[1, 3, 224, 224]]
    shapes = {o.name: o.shape for o in landmarker._session.get_outputs()}
    assert shapes == {
        "landmarks": [1, 63],
        "presence": [1, 1],
        "handedness": [1, 1],
        "world_landmarks": [1, 63],
    }


def test_missing_model_is_a_named_error(tmp_path) -> None:
    settings = Settings(model_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=settings.palm_detector):
        PalmDetector(settings)


# --- decoding helpers ---------------------------------------------------------------------------


def test_ssd_anchors_match_mediapipe_layout() -> None:
    anchors = ssd_anchors(192)
    assert anchors.shape == (2016, 2)
    # 24x24 cells with 2 anchors each, then 12x12 cells with 6 anchors each.
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], (0.5 / 24, 0.5 / 24))
    np.testing.assert_allclose(anchors[2], (1.5 / 24, 0.5 / 24))
    np.testing.assert_allclose(anchors[1152], (0.5 / 12, 0.5 / 12))
    np.testing.assert_allclose(anchors[1157], (0.5 / 12, 0.5 / 12))
    np.testing.assert_allclose(anchors[-1], (11.5 / 12, 11.5 / 12))


def test_weighted_nms_averages_overlapping_boxes_and_keeps_separate_ones() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    keypoints = np.zeros((3, 7, 2))
    keypoints[1] = 3.0
    scores = np.array([0.9, 0.6, 0.8])
    kept = weighted_nms(scores, boxes, keypoints, 0.3)
    assert [round(s, 2) for s, _, _ in kept] == [0.9, 0.8]
    np.testing.assert_allclose(kept[0][1], [0.4, 0, 10.4, 10])
    np.testing.assert_allclose(kept[0][2], np.full((7, 2), 1.2))
    np.testing.assert_allclose(kept[1][1], boxes[2])


def test_detection_rect_upright_and_rotated() -> None:
    keypoints = np.zeros((7, 2), np.float32)
    keypoints[0], keypoints[2] = (100, 150), (100, 50)  # wrist below middle-finger base
    upright = Detection(0.9, np.array([50, 50, 150, 150], np.float32), keypoints)
    rect = detection_rect(upright)
    assert rect.angle == pytest.approx(0.0)
    assert (rect.cx, rect.cy) == pytest.approx((100, 50))  # shifted up by half the box height
    assert rect.width == rect.height == pytest.approx(260)
    # Fingers pointing left (wrist right of the finger base), as in the COEP photos.
    keypoints_left = np.zeros((7, 2), np.float32)
    keypoints_left[0], keypoints_left[2] = (150, 100), (50, 100)
    left = Detection(0.9, np.array([50, 50, 150, 150], np.float32), keypoints_left)
    rect = detection_rect(left)
    assert rect.angle == pytest.approx(-math.pi / 2)
    assert (rect.cx, rect.cy) == pytest.approx((50, 100))  # shifted towards the fingers


def test_rect_to_crop_matrix_maps_corners_to_corners() -> None:
    rect = RotatedRect(200, 150, 100, 100, math.radians(30))
    matrix = rect_to_crop_matrix(rect, 224)
    cos, sin = math.cos(rect.angle), math.sin(rect.angle)
    corner = np.array([rect.cx, rect.cy]) + np.array([[cos, -sin], [sin, cos]]) @ [-50, -50]
    np.testing.assert_allclose(matrix[:, :2] @ corner + matrix[:, 2], [0, 0], atol=1e-9)
    np.testing.assert_allclose(matrix[:, :2] @ [200, 150] + matrix[:, 2], [112, 112], atol=1e-9)


def test_landmarks_rect_is_square_upright_for_an_upright_hand() -> None:
    rect = landmarks_rect(upright_right_hand().landmarks)
    assert rect.width == rect.height
    assert abs(rect.angle) < math.radians(5)


# --- ROI geometry -------------------------------------------------------------------------------


def test_palm_roi_shape_dtype_and_determinism(texture: np.ndarray) -> None:
    hand = upright_right_hand()
    roi = palm_roi(texture, hand)
    assert roi.shape == (128, 128) and roi.dtype == np.uint8
    np.testing.assert_array_equal(roi, palm_roi(texture, hand))
    assert palm_roi(texture, hand, size=64).shape == (64, 64)
    gray = cv2.cvtColor(texture, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(palm_roi(gray, hand), roi)


def test_palm_roi_puts_fingers_up_and_index_right() -> None:
    """A bright spot near the index base lands in the ROI's top-right quadrant."""
    image = np.full((CANVAS, CANVAS, 3), 60, np.uint8)
    cv2.circle(image, (235, 195), 8, (255, 255, 255), -1)  # palm, below the index MCP
    roi = palm_roi(image, upright_right_hand())
    y, x = np.unravel_index(np.argmax(cv2.GaussianBlur(roi, (9, 9), 0)), roi.shape)
    assert x > 64 and y < 64


@pytest.mark.parametrize("code", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE])
def test_palm_roi_is_rotation_invariant(texture: np.ndarray, code: int) -> None:
    hand = upright_right_hand()
    rotated = cv2.rotate(texture, code)
    angle = -90 if code == cv2.ROTATE_90_CLOCKWISE else 90
    matrix = cv2.getRotationMatrix2D(((CANVAS - 1) / 2, (CANVAS - 1) / 2), angle, 1.0)
    turned = Hand(rotate_points(hand.landmarks, matrix), "right", hand.score, hand.presence)
    difference = np.abs(palm_roi(rotated, turned).astype(int) - palm_roi(texture, hand)).mean()
    assert difference < 2.0


def test_left_hand_is_mirrored_to_look_like_a_right_palm(texture: np.ndarray) -> None:
    right = upright_right_hand()
    mirrored_points = right.landmarks.copy()
    mirrored_points[:, 0] = CANVAS - 1 - mirrored_points[:, 0]
    left = Hand(mirrored_points, "left", right.score, right.presence)
    roi_left = palm_roi(cv2.flip(texture, 1), left)
    difference = np.abs(roi_left.astype(int) - palm_roi(texture, right)).mean()
    assert difference < 2.0
    # Without the mirroring (labelled "right") the same cut is the mirror image instead.
    unmirrored = palm_roi(cv2.flip(texture, 1), Hand(mirrored_points, "right", 0.9, 0.9))
    np.testing.assert_allclose(cv2.flip(unmirrored, 1), roi_left, atol=2)


def test_palm_roi_contrast_is_normalised(texture: np.ndarray) -> None:
    dim = (texture.astype(np.float32) * 0.3 + 20).astype(np.uint8)
    roi = palm_roi(dim, upright_right_hand())
    assert roi.std() > 30


# --- pose gates ---------------------------------------------------------------------------------


def test_pose_gates() -> None:
    hand = upright_right_hand()
    assert pose_problem(hand) == ""
    # Same landmarks but classified as a left hand: the back of a left hand faces the camera.
    assert "back of the hand" in pose_problem(Hand(hand.landmarks, "left", 0.9, 0.9))
    curled = hand.landmarks.copy()
    for tip in (12, 16, 20):
        curled[tip, :2] = curled[0, :2] + (0, -60)  # tips folded down towards the wrist
    assert "curled" in pose_problem(Hand(curled, "right", 0.9, 0.9))
    tilted = hand.landmarks.copy()
    tilted[17, 2] = -150  # pinky side much closer to the camera than the index side
    tilted[5, 2] = 150
    assert "tilted" in pose_problem(Hand(tilted, "right", 0.9, 0.9))
    for axis, factor in ((0, 0.4), (1, 0.5)):  # palm turned sideways / pitched back
        squashed = hand.landmarks.copy()
        squashed[:, axis] = 200 + (squashed[:, axis] - 200) * factor
        assert "foreshortened" in pose_problem(Hand(squashed, "right", 0.9, 0.9))


# --- extractor on frames without hands ----------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        None,
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((480, 640, 3), np.float32),
        np.zeros((480, 640, 5), np.uint8),
        np.zeros((8, 8, 3), np.uint8),
        [[0, 1], [2, 3]],
    ],
    ids=["none", "empty", "float", "five-channels", "tiny", "list"],
)
def test_invalid_images_are_reported_not_raised(extractor: PalmRoiExtractor, image) -> None:
    for result in (extractor.extract(image), extractor.track(image)):
        assert result.status is RoiStatus.INVALID_IMAGE
        assert not result.ok and result.roi is None and result.hand is None
        assert result.reason


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_frames_have_no_hand(extractor: PalmRoiExtractor, value: int) -> None:
    frame = np.full((480, 640, 3), value, np.uint8)
    for result in (extractor.extract(frame), extractor.track(frame)):
        assert (result.status, result.reason) == (RoiStatus.NO_HAND, "no hand in frame")
        assert result.roi is None and result.hand is None and result.palm_width == 0.0


def test_grayscale_and_bgra_frames_are_accepted(extractor: PalmRoiExtractor) -> None:
    assert extractor.extract(np.zeros((480, 640), np.uint8)).status is RoiStatus.NO_HAND
    assert extractor.extract(np.zeros((480, 640, 4), np.uint8)).status is RoiStatus.NO_HAND


def test_results_are_frozen() -> None:
    result = RoiResult(RoiStatus.NO_HAND, "no hand in frame")
    with pytest.raises(AttributeError):
        result.status = RoiStatus.OK  # type: ignore[misc]
    assert RoiStatus.MULTIPLE_HANDS == "multiple_hands"
