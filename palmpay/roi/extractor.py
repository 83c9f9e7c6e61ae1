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
from palmpay.cputime import stage
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
    scale_rect,
)
from palmpay.roi.models import HandLandmarker, PalmDetector

__all__ = [
    "ROI_SIZE",
    "HandTrack",
    "PalmRoiExtractor",
    "RoiResult",
    "RoiStatus",
    "as_bgr",
    "check_image",
    "lost_track",
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
# Tracking (PalmRoiExtractor.track): a tracked fit whose own hand rectangle lies further than
# this share of the crop's side from the crop's centre, is larger or smaller by more than this
# factor, or turned by more than this, counts as lost and the detector runs. Frames of a held
# hand (synthetic presentations, 2 to 9 video frames apart) move <= 0.02 of the side, 4 % and
# 4 degrees; coep-dev's 4 photos of a palm on pegs up to 0.12, 4 % and 5 degrees, and their
# tracked landmarks are as close to a fresh detection's as two detections are (~0.02 palm
# widths). Past these limits (independent poses of a hand) tracked fits were off by up to a
# palm width while their presence stayed high.
TRACK_MAX_SHIFT = 0.12
TRACK_MAX_SCALE = 1.2
TRACK_MAX_TURN_DEG = 10.0

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


class HandTrack:
    """The hand followed through the frames of one presentation (one video, or the frames of
    one checkout request): where the next frame's landmark crop goes, and how often the
    detector had to run.

    :meth:`PalmRoiExtractor.track` reads and updates it. It is the only state of tracking, so
    presentations analysed at the same time (requests in threads) each use their own and share
    nothing but the models.
    """

    __slots__ = ("detections", "frames", "rect")

    def __init__(self) -> None:
        self.rect: RotatedRect | None = None
        self.frames = 0  # frames tracked
        self.detections = 0  # of which the palm detector ran on

    def reset(self) -> None:
        """Forget the hand (the counts stay); the next frame runs the detector."""
        self.rect = None

    def rescale(self, factor: float) -> None:
        """The next frames come ``factor`` times the size of the previous ones (a reduced
        decode): move the track into their pixels."""
        if self.rect is not None:
            self.rect = scale_rect(self.rect, factor)


class PalmRoiExtractor:
    """Frame -> :class:`RoiResult`: detection, landmarks, pose gates and the palm cut.

    The extractor holds only the models (safe to share between threads); :meth:`track` without
    a :class:`HandTrack` uses the extractor's own, for a single video source.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.detector = PalmDetector(self.settings)
        self.landmarker = HandLandmarker(self.settings)
        self._track = HandTrack()

    def extract(self, image_bgr: np.ndarray) -> RoiResult:
        """ROI of a single still image (runs the palm detector every call)."""
        invalid = check_image(image_bgr)
        if invalid:
            return RoiResult(RoiStatus.INVALID_IMAGE, invalid)
        image = as_bgr(image_bgr)
        found = self._detect_hand(image)
        return found if isinstance(found, RoiResult) else self._finish(image, found)

    def track(self, frame_bgr: np.ndarray, track: HandTrack | None = None) -> RoiResult:
        """ROI of the next frame of a presentation, tracking the hand from the previous frame's
        landmarks (in ``track``, by default the extractor's own).

        The landmark crop goes where the previous frame's landmarks say the hand is
        (:func:`landmarks_rect`, as MediaPipe's video mode does); the detector only runs when
        there is no track, or when the tracked fit is lost: its presence below
        ``settings.presence_score``, or its hand no longer where the crop was (see
        :func:`lost_track`). A second hand entering while a hand is tracked is not seen until
        tracking is lost.
        """
        state = self._track if track is None else track
        state.frames += 1
        invalid = check_image(frame_bgr)
        if invalid:
            state.reset()
            return RoiResult(RoiStatus.INVALID_IMAGE, invalid)
        image = as_bgr(frame_bgr)
        hand = None
        if state.rect is not None:
            hand = self.landmarker.run(image, state.rect)
            why = lost_track(hand, state.rect, self.settings.presence_score)
            if why:
                log.debug("tracking lost (%s)", why)
                hand = None
        if hand is None:
            state.detections += 1
            found = self._detect_hand(image)
            if isinstance(found, RoiResult):
                state.reset()
                return found
            hand = found
        state.rect = landmarks_rect(hand.landmarks)
        return self._finish(image, hand)

    def reset(self) -> None:
        """Forget the extractor's own tracked hand; the next :meth:`track` call without a
        :class:`HandTrack` runs the detector."""
        self._track.reset()

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
        with stage("roi"):
            roi = palm_roi(image, hand, ROI_SIZE)
        return RoiResult(RoiStatus.OK, "ok", roi=roi, hand=hand, palm_width=palm_width)


def lost_track(hand: Hand, crop: RotatedRect, presence: float) -> str:
    """Why a hand fitted in a tracked ``crop`` is not to be trusted as the tracked hand, or "".

    The landmark model scores its fit's presence; below ``presence`` the hand is gone. A fit
    whose own hand rectangle (:func:`landmarks_rect`) lies more than :data:`TRACK_MAX_SHIFT`
    of the crop's side from the crop's centre, is :data:`TRACK_MAX_SCALE` times larger or
    smaller, or turned by more than :data:`TRACK_MAX_TURN_DEG`, saw the hand move between the
    frames more than a held hand does: the model fits a hand off the centre of its crop
    poorly (and still says it is present), so the detector runs instead.
    """
    if hand.presence < presence:
        return f"presence {hand.presence:.2f}"
    fitted = landmarks_rect(hand.landmarks)
    side = max(crop.width, 1e-6)
    shift = math.hypot(fitted.cx - crop.cx, fitted.cy - crop.cy) / side
    if shift > TRACK_MAX_SHIFT:
        return f"hand moved {shift:.2f} of the crop"
    scale = fitted.width / side
    if not 1 / TRACK_MAX_SCALE <= scale <= TRACK_MAX_SCALE:
        return f"hand scaled x{scale:.2f}"
    turn = math.degrees(abs((fitted.angle - crop.angle + math.pi) % (2 * math.pi) - math.pi))
    if turn > TRACK_MAX_TURN_DEG:
        return f"hand turned {turn:.0f} degrees"
    return ""


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
