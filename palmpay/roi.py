"""Palm region of interest: hand landmarks on an RGB frame, then a square palm cut.

Pipeline (MediaPipe Hands, run with onnxruntime; models built by ``models/build_hand_models.py``):

1. :class:`PalmDetector` letterboxes the frame to a 192x192 square (zero border), runs the palm
   detector and decodes its 2016 SSD anchors (sigmoid scores, weighted NMS at IoU 0.3) into
   :class:`Detection` objects in frame pixels.
2. :func:`detection_rect` turns a detection into the rotated hand rectangle MediaPipe uses: rotated
   so that keypoint 0 (wrist) -> 2 (middle-finger base) points up, shifted by -0.5 of its height,
   squared on the long side and scaled by 2.6.
3. :class:`HandLandmarker` warps that rectangle to 224x224, runs the landmark model and maps the 21
   landmarks back to frame pixels (:class:`Hand`). In video (:meth:`PalmRoiExtractor.track`) the
   next frame's rectangle comes from the previous landmarks (:func:`landmarks_rect`), so the
   detector only runs when tracking is lost.
4. :func:`palm_roi` cuts a square aligned with the palm's own axes from the wrist and the index,
   middle and pinky finger bases, fingers up, left hands mirrored so every ROI looks like a right
   palm, 128x128 grayscale with CLAHE contrast normalisation.

Handedness convention: :attr:`Hand.handedness` is the person's real hand ("right" = right hand)
for an ordinary, non-mirrored camera image. MediaPipe labels hands as seen in a mirrored selfie
view; its "Left" is our "right". If the camera feed is mirrored, the label is swapped.

Pose gates (status ``BAD_POSE``), all from the landmarks, thresholds below as module constants:

- hand presence from the landmark model below ``settings.presence_score``;
- back of the hand towards the camera: with fingers up, a right palm has its index base to the
  right of its pinky base (in the image); if the landmark chirality contradicts the handedness
  classifier the back of the hand (or a badly wrong fit) is facing the camera;
- palm strongly tilted away from the camera: the palm plane's normal, from the 3-D landmarks,
  more than :data:`MAX_TILT_DEG` off the camera axis, or the palm's proportions in the image
  (finger-base width over wrist-to-middle-base length, about 0.65 for a flat palm facing the
  camera) outside :data:`PALM_RATIO_RANGE`;
- fingers curled over the palm: two or more fingertips closer to the wrist than their own base.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from palmpay.config import Settings, get_settings
from palmpay.ortsession import open_session

__all__ = [
    "Detection",
    "Hand",
    "HandLandmarker",
    "PalmDetector",
    "PalmRoiExtractor",
    "RoiResult",
    "RoiStatus",
    "RotatedRect",
    "detection_rect",
    "landmarks_rect",
    "palm_roi",
    "palm_region",
    "pose_problem",
]

log = logging.getLogger(__name__)

# Landmark indices (MediaPipe hand topology).
WRIST, INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP = 0, 5, 9, 13, 17
FINGER_TIPS = (8, 12, 16, 20)
FINGER_MCPS = (INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP)

# Palm detector decoding (MediaPipe palm_detection_cpu.pbtxt).
ANCHOR_STRIDES = (8, 16, 16, 16)
ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 plus the interpolated-scale anchor
NMS_IOU = 0.3
SCORE_CLIP = 100.0
# Hand rectangle from a detection (palm_detection_detection_to_roi.pbtxt).
DETECTION_RECT_SCALE = 2.6
DETECTION_RECT_SHIFT_Y = -0.5
# Hand rectangle from landmarks of the previous frame (hand_landmark_landmarks_to_roi.pbtxt).
TRACK_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
TRACK_RECT_SCALE = 2.0
TRACK_RECT_SHIFT_Y = -0.1
LANDMARK_Z_NORMALIZE = 0.4  # TensorsToLandmarksCalculator normalize_z

# Two detections count as two hands if neither box overlaps the other by more than this fraction
# of the smaller box (a single hand sometimes yields a second, nested palm box).
MULTI_HAND_MAX_OVERLAP = 0.1
# Pose gates.
MAX_TILT_DEG = 50.0
PALM_RATIO_RANGE = (0.35, 1.1)  # COEP (flat palms): 5th-95th percentile 0.60-0.70
MIN_CURLED_FINGERS = 2
# ROI geometry, in units of the index-to-pinky MCP distance ("palm width").
# Side 1.0 keeps the square inside the palm: at 1.15 it took in the palm contour, which every
# palm shares, and coep-dev impostor scores rose (FAR at a fixed threshold x10).
ROI_SIDE = 1.0
ROI_CENTRE_BELOW_MCP = 0.65  # centre of the square below the MCP line, towards the wrist
ROI_CENTRE_TO_INDEX = 0.08  # and shifted from the MCP midpoint towards the index (thumb) side
ROI_SIZE = 128
CLAHE_CLIP = 2.0
CLAHE_TILES = 4


class RoiStatus(StrEnum):
    OK = "ok"
    NO_HAND = "no_hand"
    MULTIPLE_HANDS = "multiple_hands"
    BAD_POSE = "bad_pose"
    PALM_TOO_SMALL = "palm_too_small"
    INVALID_IMAGE = "invalid_image"


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


@dataclass(frozen=True, eq=False)
class RoiResult:
    """Outcome of one frame: a palm ROI, or the reason there is none.

    Results hold arrays, so they compare by identity; compare ``status`` and fields instead.
    """

    status: RoiStatus
    reason: str
    roi: np.ndarray | None = None  # (128, 128) uint8, right-palm orientation, fingers up
    hand: Hand | None = None
    palm_width: float = 0.0  # index-MCP to pinky-MCP distance in frame pixels

    @property
    def ok(self) -> bool:
        return self.status == RoiStatus.OK


class PalmDetector:
    """MediaPipe palm detector (ONNX): finds palms and their 7 keypoints in a BGR frame."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        self._session = open_session(settings.model_path(settings.palm_detector), settings)
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self.size = int(model_input.shape[2])
        self._outputs = {o.name: o.shape for o in self._session.get_outputs()}
        self._anchors = ssd_anchors(self.size)
        if self._outputs["scores"][1] != len(self._anchors):
            raise ValueError(
                f"palm detector has {self._outputs['scores'][1]} boxes, "
                f"anchors give {len(self._anchors)}"
            )
        self.min_score = settings.detection_score

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """All palms above ``settings.detection_score``, best first, in frame pixels."""
        height, width = image_bgr.shape[:2]
        side = max(height, width)
        scale = self.size / side
        # Letterbox: the frame centred in a black square, as MediaPipe's ImageToTensor (FIT) does.
        to_input = np.array(
            [[scale, 0, (side - width) / 2 * scale], [0, scale, (side - height) / 2 * scale]],
            dtype=np.float64,
        )
        tensor = to_tensor(
            cv2.warpAffine(
                image_bgr,
                to_input,
                (self.size, self.size),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
        )
        regressors, scores = self._session.run(["regressors", "scores"], {self._input_name: tensor})
        logits = np.clip(scores[0, :, 0], -SCORE_CLIP, SCORE_CLIP)
        probs = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(probs >= self.min_score)
        if keep.size == 0:
            return []
        boxes, keypoints = decode_boxes(regressors[0, keep], self._anchors[keep], self.size)
        detections = []
        for score, box, points in weighted_nms(probs[keep], boxes, keypoints, NMS_IOU):
            # Input pixels -> frame pixels (undo the letterbox).
            box = box.reshape(2, 2) / scale - [(side - width) / 2, (side - height) / 2]
            points = points / scale - [(side - width) / 2, (side - height) / 2]
            detections.append(
                Detection(
                    float(score), box.reshape(4).astype(np.float32), points.astype(np.float32)
                )
            )
        return detections


class HandLandmarker:
    """MediaPipe hand landmark model (ONNX): 21 landmarks of the hand inside a rotated rect."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        self._session = open_session(settings.model_path(settings.hand_landmarker), settings)
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self.size = int(model_input.shape[2])

    def run(self, image_bgr: np.ndarray, rect: RotatedRect) -> Hand:
        """Landmarks of the hand in ``rect`` (a square rotated rect), mapped to frame pixels."""
        to_crop = rect_to_crop_matrix(rect, self.size)
        crop = cv2.warpAffine(
            image_bgr,
            to_crop,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        landmarks, presence, handedness = self._session.run(
            ["landmarks", "presence", "handedness"], {self._input_name: to_tensor(crop)}
        )
        points = landmarks.reshape(21, 3).astype(np.float64)
        to_frame = cv2.invertAffineTransform(to_crop)
        xy = points[:, :2] @ to_frame[:, :2].T + to_frame[:, 2]
        z = points[:, 2] * rect.width / self.size / LANDMARK_Z_NORMALIZE
        # The model's handedness output is P(MediaPipe "Left") = P(real right hand, unmirrored).
        p_right = float(handedness.reshape(-1)[0])
        return Hand(
            landmarks=np.column_stack([xy, z]).astype(np.float32),
            handedness="right" if p_right >= 0.5 else "left",
            score=max(p_right, 1.0 - p_right),
            presence=float(presence.reshape(-1)[0]),
        )


class PalmRoiExtractor:
    """Frame -> :class:`RoiResult`: detection, landmarks, pose gates and the palm cut."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.detector = PalmDetector(self.settings)
        self.landmarker = HandLandmarker(self.settings)
        self._track_rect: RotatedRect | None = None

    def extract(self, image_bgr: np.ndarray) -> RoiResult:
        """ROI of a single still image (runs the palm detector every call)."""
        invalid = check_image(image_bgr)
        if invalid:
            return RoiResult(RoiStatus.INVALID_IMAGE, invalid)
        image = as_bgr(image_bgr)
        hand, failure = self._detect_hand(image)
        return failure or self._finish(image, hand)

    def track(self, frame_bgr: np.ndarray) -> RoiResult:
        """ROI of the next video frame, tracking the hand from the previous frame's landmarks.

        The detector only runs when there is no track or the tracked hand's presence drops below
        ``settings.presence_score``. A second hand entering while a hand is tracked is not seen
        until tracking is lost.
        """
        invalid = check_image(frame_bgr)
        if invalid:
            self.reset()
            return RoiResult(RoiStatus.INVALID_IMAGE, invalid)
        image = as_bgr(frame_bgr)
        hand = None
        if self._track_rect is not None:
            hand = self.landmarker.run(image, self._track_rect)
            if hand.presence < self.settings.presence_score:
                log.debug("tracking lost (presence %.2f)", hand.presence)
                hand = None
        if hand is None:
            hand, failure = self._detect_hand(image)
            if failure:
                self.reset()
                return failure
        self._track_rect = landmarks_rect(hand.landmarks)
        return self._finish(image, hand)

    def reset(self) -> None:
        """Forget the tracked hand; the next :meth:`track` call runs the detector."""
        self._track_rect = None

    def _detect_hand(self, image: np.ndarray) -> tuple[Hand | None, RoiResult | None]:
        detections = self.detector.detect(image)
        if not detections:
            return None, RoiResult(RoiStatus.NO_HAND, "no hand in frame")
        others = sum(separate_boxes(detections[0].box, other.box) for other in detections[1:])
        if others:
            return None, RoiResult(
                RoiStatus.MULTIPLE_HANDS, f"{1 + others} hands in frame; show only one palm"
            )
        hand = self.landmarker.run(image, detection_rect(detections[0]))
        if hand.presence < self.settings.presence_score:
            return None, RoiResult(
                RoiStatus.BAD_POSE,
                f"hand not clearly visible (presence {hand.presence:.2f})",
                hand=hand,
            )
        return hand, None

    def _finish(self, image: np.ndarray, hand: Hand) -> RoiResult:
        palm_width = palm_width_px(hand)
        problem = pose_problem(hand)
        if problem:
            return RoiResult(RoiStatus.BAD_POSE, problem, hand=hand, palm_width=palm_width)
        minimum = self.settings.min_palm_pixels
        if palm_width < minimum:
            return RoiResult(
                RoiStatus.PALM_TOO_SMALL,
                f"palm too small ({palm_width:.0f} px wide, need {minimum:.0f}); move closer",
                hand=hand,
                palm_width=palm_width,
            )
        roi = palm_roi(image, hand, ROI_SIZE)
        return RoiResult(RoiStatus.OK, "ok", roi=roi, hand=hand, palm_width=palm_width)


def palm_roi(image_bgr: np.ndarray, hand: Hand, size: int = ROI_SIZE) -> np.ndarray:
    """Square palm cut aligned to the palm's axes: fingers up, right-palm orientation.

    The square's side is :data:`ROI_SIDE` x the index-to-pinky MCP distance, its centre
    :data:`ROI_CENTRE_BELOW_MCP` x that distance below the MCP line along the wrist -> middle-MCP
    axis. Right hands: output +x points from the pinky side to the index side; left hands are
    mirrored so that they look like right palms. Returns ``size`` x ``size`` uint8 grayscale with
    CLAHE contrast normalisation.
    """
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(as_bgr(image_bgr), cv2.COLOR_BGR2GRAY)
    points = hand.landmarks[:, :2].astype(np.float64)
    wrist, index, middle, pinky = points[[WRIST, INDEX_MCP, MIDDLE_MCP, PINKY_MCP]]
    up = middle - wrist
    up /= max(np.linalg.norm(up), 1e-6)
    # Image y points down: rotating "up" by +90 degrees on screen gives the right-hand side.
    side_axis = (
        np.array([-up[1], up[0]]) if hand.handedness == "right" else np.array([up[1], -up[0]])
    )
    down = -up
    width = float(np.linalg.norm(index - pinky))
    mcp_line = (index + pinky) / 2
    towards_index = index - pinky
    towards_index /= max(np.linalg.norm(towards_index), 1e-6)
    centre = mcp_line + width * (ROI_CENTRE_BELOW_MCP * down + ROI_CENTRE_TO_INDEX * towards_index)
    side = ROI_SIDE * max(width, 1.0)
    # Supersample by an integer factor, then area-average down: no aliasing on large palms.
    factor = int(min(4, max(1, math.ceil(side / size))))
    out = size * factor
    step = side / out
    # Output pixel (u, v) centre -> frame: centre + (u + 0.5 - out/2) step side + (v ...) step down.
    to_frame = np.column_stack(
        [side_axis * step, down * step, centre - (out / 2 - 0.5) * step * (side_axis + down)]
    )
    cut = cv2.warpAffine(
        gray,
        to_frame,
        (out, out),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if factor > 1:
        cut = cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA)
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_TILES, CLAHE_TILES))
    return clahe.apply(cut)


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


def rect_to_crop_matrix(rect: RotatedRect, size: int) -> np.ndarray:
    """2x3 affine from frame pixels to a ``size`` x ``size`` crop of ``rect`` (corner to corner)."""
    cos, sin = math.cos(rect.angle), math.sin(rect.angle)
    sx, sy = size / rect.width, size / rect.height
    # crop = S R^T (p - c) + size/2, with R the rect's rotation.
    linear = np.array([[cos * sx, sin * sx], [-sin * sy, cos * sy]])
    offset = np.array([size / 2, size / 2]) - linear @ np.array([rect.cx, rect.cy])
    return np.column_stack([linear, offset])


def ssd_anchors(input_size: int) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1] for MediaPipe's fixed-size SSD anchors (offset 0.5)."""
    anchors = []
    layer = 0
    while layer < len(ANCHOR_STRIDES):
        stride = ANCHOR_STRIDES[layer]
        same = sum(1 for s in ANCHOR_STRIDES[layer:] if s == stride)
        cells = math.ceil(input_size / stride)
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        anchors.append(np.repeat(centres, ANCHORS_PER_LAYER * same, axis=1).reshape(-1, 2))
        layer += same
    return np.concatenate(anchors).astype(np.float32)


def decode_boxes(
    raw: np.ndarray, anchors: np.ndarray, input_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Regressor rows -> boxes (N, 4: x_min, y_min, x_max, y_max) and keypoints (N, 7, 2), px."""
    centre = raw[:, 0:2] + anchors * input_size
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:18].reshape(-1, 7, 2) + anchors[:, None, :] * input_size
    return boxes.astype(np.float64), keypoints.astype(np.float64)


def weighted_nms(
    scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, threshold: float
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's weighted NMS: average each cluster (IoU > threshold) weighted by score."""
    order = np.argsort(-scores, kind="stable")
    result = []
    while order.size:
        best = order[0]
        overlap = iou(boxes[best], boxes[order])
        cluster = order[overlap > threshold]
        if cluster.size == 0:
            cluster = order[:1]
        weights = scores[cluster][:, None]
        total = weights.sum()
        box = (boxes[cluster] * weights).sum(axis=0) / total
        points = (keypoints[cluster] * weights[:, :, None]).sum(axis=0) / total
        result.append((float(scores[best]), box, points))
        order = order[overlap <= threshold]
        if order.size and order[0] == best:
            order = order[1:]
    return result


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with many (x_min, y_min, x_max, y_max)."""
    low = np.maximum(box[:2], boxes[:, :2])
    high = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def separate_boxes(first: np.ndarray, second: np.ndarray) -> bool:
    """True if the boxes overlap by at most :data:`MULTI_HAND_MAX_OVERLAP` of the smaller one."""
    low = np.maximum(first[:2], second[:2])
    high = np.minimum(first[2:], second[2:])
    inter = float(np.prod(np.clip(high - low, 0, None)))
    smaller = min(float(np.prod(first[2:] - first[:2])), float(np.prod(second[2:] - second[:2])))
    return inter <= MULTI_HAND_MAX_OVERLAP * max(smaller, 1e-9)


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
    ratio = float(np.linalg.norm(across) / max(np.linalg.norm(up), 1e-9))
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


def check_image(image: object) -> str:
    """Why ``image`` is not a usable frame, or "" if it is one."""
    if image is None:
        return "no image"
    if not isinstance(image, np.ndarray):
        return f"image is a {type(image).__name__}, not a numpy array"
    if image.dtype != np.uint8:
        return f"image dtype is {image.dtype}, expected uint8"
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        return f"image shape {image.shape} is not HxW, HxWx1, HxWx3 or HxWx4"
    if image.shape[0] < 16 or image.shape[1] < 16:
        return f"image {image.shape[1]}x{image.shape[0]} is too small"
    return ""


def as_bgr(image: np.ndarray) -> np.ndarray:
    """3-channel BGR view of a grayscale, BGR or BGRA uint8 image."""
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def to_tensor(image_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 HxWx3 -> RGB float32 1x3xHxW in [0, 1]."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
