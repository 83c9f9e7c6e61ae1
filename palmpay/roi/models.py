"""The two MediaPipe Hands ONNX models, one small class each (as insightface's model_zoo).

:class:`PalmDetector` finds palms and their 7 keypoints; :class:`HandLandmarker` fits 21
landmarks inside a rotated hand rectangle. Each class opens (or is given) an onnxruntime
session and reads its input name and size from it, so a model exported at another input size
works unchanged. The SSD anchor, box decoding and weighted-NMS helpers of the detector live
here too. See :mod:`palmpay.roi` for the whole stage.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import onnxruntime as ort

from palmpay.config import Settings, get_settings
from palmpay.cputime import stage
from palmpay.ortsession import open_session
from palmpay.roi.hand import Detection, Hand, RotatedRect, rect_to_crop_matrix

__all__ = [
    "HandLandmarker",
    "PalmDetector",
    "decode_boxes",
    "iou",
    "ssd_anchors",
    "to_tensor",
    "weighted_nms",
]

# Palm detector decoding (MediaPipe palm_detection_cpu.pbtxt).
ANCHOR_STRIDES = (8, 16, 16, 16)
ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 plus the interpolated-scale anchor
NMS_IOU = 0.3
SCORE_CLIP = 100.0
LANDMARK_Z_NORMALIZE = 0.4  # TensorsToLandmarksCalculator normalize_z


class _SquareInputModel:
    """An ONNX model taking N×3×side×side images: its session, input name and side.

    ``session`` is an onnxruntime session of the model; by default the file the settings field
    named by :attr:`model_setting` points at, opened with the settings' providers.
    """

    model_setting: str

    def __init__(
        self, settings: Settings | None = None, session: ort.InferenceSession | None = None
    ) -> None:
        settings = settings or get_settings()
        model = getattr(settings, self.model_setting)
        self._session = session or open_session(settings.model_path(model), settings)
        model_input = self._session.get_inputs()[0]
        self._input_name: str = model_input.name
        self.size = int(model_input.shape[2])


class PalmDetector(_SquareInputModel):
    """MediaPipe palm detector (ONNX): finds palms and their 7 keypoints in a BGR frame.

    ``session`` is an onnxruntime session of the model (default: ``settings.palm_detector``
    opened with the settings' providers); the input name and size are read from it.
    """

    model_setting = "palm_detector"

    def __init__(
        self, settings: Settings | None = None, session: ort.InferenceSession | None = None
    ) -> None:
        settings = settings or get_settings()
        super().__init__(settings, session)
        self._outputs = {o.name: o.shape for o in self._session.get_outputs()}
        self._anchors = ssd_anchors(self.size)
        if self._outputs["scores"][1] != len(self._anchors):
            raise ValueError(
                f"palm detector has {self._outputs['scores'][1]} boxes, "
                f"anchors give {len(self._anchors)}"
            )
        self.min_score = settings.detection_score

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """All palms above ``settings.detection_score``, best first, in frame pixels (CPU
        time counted as stage ``detection``, :mod:`palmpay.cputime`)."""
        with stage("detection"):
            return self._detect(image_bgr)

    def _detect(self, image_bgr: np.ndarray) -> list[Detection]:
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


class HandLandmarker(_SquareInputModel):
    """MediaPipe hand landmark model (ONNX): 21 landmarks of the hand inside a rotated rect.

    ``session`` is an onnxruntime session of the model (default: ``settings.hand_landmarker``);
    the input name and size are read from it.
    """

    model_setting = "hand_landmarker"

    def run(self, image_bgr: np.ndarray, rect: RotatedRect) -> Hand:
        """Landmarks of the hand in ``rect`` (a square rotated rect), mapped to frame pixels
        (CPU time counted as stage ``landmarks``, :mod:`palmpay.cputime`)."""
        with stage("landmarks"):
            return self._run(image_bgr, rect)

    def _run(self, image_bgr: np.ndarray, rect: RotatedRect) -> Hand:
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


def to_tensor(image_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 HxWx3 -> RGB float32 1x3xHxW in [0, 1]."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
