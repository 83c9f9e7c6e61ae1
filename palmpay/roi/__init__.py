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
   detector only runs when tracking is lost (:func:`lost_track`); a :class:`HandTrack` holds
   one presentation's track, so concurrent presentations each keep their own.
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

from palmpay.roi.extractor import (
    ROI_SIZE,
    HandTrack,
    PalmRoiExtractor,
    RoiResult,
    RoiStatus,
    as_bgr,
    check_image,
    lost_track,
    palm_roi,
    separate_boxes,
)
from palmpay.roi.hand import (
    Detection,
    Hand,
    RotatedRect,
    detection_rect,
    landmarks_rect,
    palm_region,
    palm_width_px,
    pose_problem,
    rect_to_crop_matrix,
    scale_hand,
    scale_rect,
)
from palmpay.roi.models import HandLandmarker, PalmDetector, ssd_anchors, weighted_nms

__all__ = [
    "ROI_SIZE",
    "Detection",
    "Hand",
    "HandLandmarker",
    "HandTrack",
    "PalmDetector",
    "PalmRoiExtractor",
    "RoiResult",
    "RoiStatus",
    "RotatedRect",
    "as_bgr",
    "check_image",
    "detection_rect",
    "landmarks_rect",
    "lost_track",
    "palm_region",
    "palm_roi",
    "palm_width_px",
    "pose_problem",
    "rect_to_crop_matrix",
    "scale_hand",
    "scale_rect",
    "separate_boxes",
    "ssd_anchors",
    "weighted_nms",
]
