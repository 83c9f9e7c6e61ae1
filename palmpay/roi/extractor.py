"""The ROI stage's front door: frame → :class:`RoiResult` (a palm ROI, or why there is none).

:class:`PalmRoiExtractor` runs :class:`~palmpay.roi.models.PalmDetector` and
:class:`~palmpay.roi.models.HandLandmarker`, applies the pose gates of
:mod:`palmpay.roi.hand` and cuts the palm square (:func:`palm_roi`). See :mod:`palmpay.roi`
for the whole stage.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from palmpay.config import Settings, get_settings
from palmpay.roi.hand import (
    INDEX_MCP,
    MIDDLE_MCP,
    PINKY_MCP,
    WRIST,
    Hand,
    RotatedRect,
    detection_rect,
    landmarks_rect,
    palm_width_px,
    pose_problem,
)
from palmpay.roi.models import HandLandmarker, PalmDetector

__all__ = [
    "ROI_SIZE",
    "PalmRoiExtractor",
    "RoiResult",
    "RoiStatus",
    "as_bgr",
    "check_image",
    "palm_roi",
    "separate_boxes",
]

log = logging.getLogger(__name__)

# Two detections count as two hands if neither box overlaps the other by more than this fraction
# of the smaller box (a single hand sometimes yields a second, nested palm box).
MULTI_HAND_MAX_OVERLAP = 0.1
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
        found = self._detect_hand(image)
        return found if isinstance(found, RoiResult) else self._finish(image, found)

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
            found = self._detect_hand(image)
            if isinstance(found, RoiResult):
                self.reset()
                return found
            hand = found
        self._track_rect = landmarks_rect(hand.landmarks)
        return self._finish(image, hand)

    def reset(self) -> None:
        """Forget the tracked hand; the next :meth:`track` call runs the detector."""
        self._track_rect = None

    def _detect_hand(self, image: np.ndarray) -> Hand | RoiResult:
        """The one hand in a still frame, or the result saying why there is none."""
        detections = self.detector.detect(image)
        if not detections:
            return RoiResult(RoiStatus.NO_HAND, "no hand in frame")
        others = sum(separate_boxes(detections[0].box, other.box) for other in detections[1:])
        if others:
            return RoiResult(
                RoiStatus.MULTIPLE_HANDS, f"{1 + others} hands in frame; show only one palm"
            )
        hand = self.landmarker.run(image, detection_rect(detections[0]))
        if hand.presence < self.settings.presence_score:
            return RoiResult(
                RoiStatus.BAD_POSE,
                f"hand not clearly visible (presence {hand.presence:.2f})",
                hand=hand,
            )
        return hand

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


def separate_boxes(first: np.ndarray, second: np.ndarray) -> bool:
    """True if the boxes overlap by at most :data:`MULTI_HAND_MAX_OVERLAP` of the smaller one."""
    low = np.maximum(first[:2], second[:2])
    high = np.minimum(first[2:], second[2:])
    inter = float(np.prod(np.clip(high - low, 0, None)))
    smaller = min(float(np.prod(first[2:] - first[:2])), float(np.prod(second[2:] - second[:2])))
    return inter <= MULTI_HAND_MAX_OVERLAP * max(smaller, 1e-9)


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
