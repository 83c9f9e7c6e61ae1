"""Hand geometry for the ROI stage: landmarks, rotated rectangles and the pose gates.

Pure numpy on :class:`Hand` landmarks and :class:`Detection` keypoints, no model: the
MediaPipe rectangle rules (:func:`detection_rect` for a fresh detection, :func:`landmarks_rect`
to track from the previous frame), the pose gates (:func:`pose_problem`) and the palm's
bounding box and width (:func:`palm_region`, :func:`palm_width_px`) that the quality gates
measure. See :mod:`palmpay.roi` for the whole stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Detection",
    "Hand",
    "RotatedRect",
    "detection_rect",
    "landmarks_rect",
    "palm_region",
    "palm_width_px",
    "pose_problem",
    "rect_to_crop_matrix",
    "rotation_up",
    "scale_hand",
    "scale_rect",
    "transform_rect",
]

# Landmark indices (MediaPipe hand topology).
WRIST, INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP = 0, 5, 9, 13, 17
FINGER_TIPS = (8, 12, 16, 20)
FINGER_MCPS = (INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP)

# Hand rectangle from a detection (palm_detection_detection_to_roi.pbtxt).
DETECTION_RECT_SCALE = 2.6
DETECTION_RECT_SHIFT_Y = -0.5
# Hand rectangle from landmarks of the previous frame (hand_landmark_landmarks_to_roi.pbtxt).
TRACK_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
TRACK_RECT_SCALE = 2.0
TRACK_RECT_SHIFT_Y = -0.1
# Pose gates.
MAX_TILT_DEG = 50.0
PALM_RATIO_RANGE = (0.35, 1.1)  # COEP (flat palms): 5th-95th percentile 0.60-0.70
MIN_CURLED_FINGERS = 2


@dataclass(frozen=True, eq=False)
class Detection:
    """One palm from the detector, in frame pixels."""

    score: float
    box: np.ndarray  # (4,) float32: x_min, y_min, x_max, y_max
    # (7, 2) float32: wrist, index/middle/ring/pinky finger bases, thumb base (CMC), thumb MCP
    keypoints: np.ndarray


@dataclass(frozen=True)
class RotatedRect:
    """A rotated rectangle in frame pixels; ``angle`` in radians, clockwise on screen (y down)."""

    cx: float
    cy: float
    width: float
    height: float
    angle: float


@dataclass(frozen=True, eq=False)
class Hand:
    """21 hand landmarks in frame pixels and what the landmark model says about them.

    ``landmarks[:, :2]`` are x, y in frame pixels; ``landmarks[:, 2]`` is the relative depth in the
    same pixel units (smaller = closer to the camera, wrist near 0). ``handedness`` is the
    person's real hand for a non-mirrored image (see the module docstring); ``score`` is the
    handedness classifier's confidence in that label (0.5-1); ``presence`` the hand-presence
    score of the landmark model (0-1).
    """

    landmarks: np.ndarray
    handedness: str
    score: float
    presence: float


def detection_rect(detection: Detection) -> RotatedRect:
    """MediaPipe's hand rect from a palm detection: rotated wrist -> middle base, x2.6."""
    x_min, y_min, x_max, y_max = (float(v) for v in detection.box)
    rect = RotatedRect(
        (x_min + x_max) / 2,
        (y_min + y_max) / 2,
        x_max - x_min,
        y_max - y_min,
        rotation_up(detection.keypoints[0], detection.keypoints[2]),
    )
    return transform_rect(rect, DETECTION_RECT_SCALE, DETECTION_RECT_SHIFT_Y)


def landmarks_rect(landmarks: np.ndarray) -> RotatedRect:
    """MediaPipe's tracking rect from the previous frame's landmarks (x2.0, shift -0.1)."""
    points = landmarks[list(TRACK_LANDMARKS), :2].astype(np.float64)
    # Rotation: wrist -> mean of the middle base and the midpoint of the index and ring bases.
    bases = landmarks[[INDEX_MCP, MIDDLE_MCP, RING_MCP], :2].astype(np.float64)
    target = ((bases[0] + bases[2]) / 2 + bases[1]) / 2
    angle = rotation_up(landmarks[WRIST, :2], target)
    # Axis-aligned box of the points in the hand's rotated frame, centred back in the image.
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    cos, sin = math.cos(angle), math.sin(angle)
    local = (points - centre) @ np.array([[cos, -sin], [sin, cos]])
    low, high = local.min(axis=0), local.max(axis=0)
    mid = (low + high) / 2
    cx = centre[0] + cos * mid[0] - sin * mid[1]
    cy = centre[1] + sin * mid[0] + cos * mid[1]
    rect = RotatedRect(cx, cy, high[0] - low[0], high[1] - low[1], angle)
    return transform_rect(rect, TRACK_RECT_SCALE, TRACK_RECT_SHIFT_Y)


def rotation_up(start: np.ndarray, end: np.ndarray) -> float:
    """Rotation (radians) that turns the ``start`` -> ``end`` vector to point up on screen."""
    angle = math.pi / 2 - math.atan2(-(float(end[1]) - float(start[1])), float(end[0] - start[0]))
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def transform_rect(rect: RotatedRect, scale: float, shift_y: float) -> RotatedRect:
    """Shift along the rect's own y axis by ``shift_y`` x height, square on the long side, scale."""
    cx = rect.cx - rect.height * shift_y * math.sin(rect.angle)
    cy = rect.cy + rect.height * shift_y * math.cos(rect.angle)
    side = max(rect.width, rect.height) * scale
    return RotatedRect(cx, cy, side, side, rect.angle)


def scale_rect(rect: RotatedRect, factor: float) -> RotatedRect:
    """``rect`` in the pixels of the same frame resized by ``factor`` (pixel centres kept:
    ``x' + 0.5 = (x + 0.5) * factor``, as a 1/k JPEG decode or an area resize maps them)."""
    return RotatedRect((rect.cx + 0.5) * factor - 0.5, (rect.cy + 0.5) * factor - 0.5,
                       rect.width * factor, rect.height * factor, rect.angle)


def scale_hand(hand: Hand, factor: float) -> Hand:
    """``hand`` in the pixels of the same frame resized by ``factor`` (see :func:`scale_rect`;
    depth scales with the pixels)."""
    landmarks = hand.landmarks.astype(np.float64)
    landmarks[:, :2] = (landmarks[:, :2] + 0.5) * factor - 0.5
    landmarks[:, 2] *= factor
    return Hand(landmarks.astype(np.float32), hand.handedness, hand.score, hand.presence)


def rect_to_crop_matrix(rect: RotatedRect, size: int) -> np.ndarray:
    """2x3 affine from frame pixels to a ``size`` x ``size`` crop of ``rect`` (corner to corner)."""
    cos, sin = math.cos(rect.angle), math.sin(rect.angle)
    sx, sy = size / rect.width, size / rect.height
    # crop = S R^T (p - c) + size/2, with R the rect's rotation.
    linear = np.array([[cos * sx, sin * sx], [-sin * sy, cos * sy]])
    offset = np.array([size / 2, size / 2]) - linear @ np.array([rect.cx, rect.cy])
    return np.column_stack([linear, offset])


def pose_problem(hand: Hand) -> str:
    """A sentence saying why the pose is unusable for a palm ROI, or "" if it is fine."""
    points = hand.landmarks.astype(np.float64)
    wrist, index, pinky = points[WRIST], points[INDEX_MCP], points[PINKY_MCP]
    up = points[MIDDLE_MCP, :2] - wrist[:2]
    across = index[:2] - pinky[:2]
    # Screen cross product: > 0 when the index base is to the right of the pinky, fingers up.
    chirality = "right" if up[0] * across[1] - up[1] * across[0] > 0 else "left"
    if chirality != hand.handedness:
        return "back of the hand towards the camera; show the palm"
    normal = np.cross(index - wrist, pinky - wrist)
    tilt = math.degrees(math.acos(min(1.0, abs(normal[2]) / max(np.linalg.norm(normal), 1e-9))))
    if tilt > MAX_TILT_DEG:
        return f"palm tilted {tilt:.0f} degrees away from the camera; hold it flat"
    ratio = float(np.linalg.norm(across)) / max(float(np.linalg.norm(up)), 1e-9)
    if not PALM_RATIO_RANGE[0] <= ratio <= PALM_RATIO_RANGE[1]:
        return f"palm foreshortened (width/length {ratio:.2f}); hold it flat, facing the camera"
    wrist_xy = wrist[:2]
    curled = sum(
        np.linalg.norm(points[tip, :2] - wrist_xy) < np.linalg.norm(points[mcp, :2] - wrist_xy)
        for tip, mcp in zip(FINGER_TIPS, FINGER_MCPS, strict=True)
    )
    if curled >= MIN_CURLED_FINGERS:
        return f"{curled} fingers curled over the palm; open the hand"
    return ""


def palm_width_px(hand: Hand) -> float:
    """Index-MCP to pinky-MCP distance in frame pixels."""
    return float(np.linalg.norm(hand.landmarks[INDEX_MCP, :2] - hand.landmarks[PINKY_MCP, :2]))


def palm_region(hand: Hand) -> tuple[int, int, int, int]:
    """Bounding box ``(x0, y0, x1, y1)`` in frame pixels of the palm's landmarks (wrist, thumb
    base and the four finger bases): the region the capture quality gates measure."""
    points = hand.landmarks[[WRIST, 1, INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP], :2]
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))
