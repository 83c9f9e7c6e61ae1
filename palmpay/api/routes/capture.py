"""Capture helper for the kiosk and terminal UIs: is this frame good enough?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from palmpay.api.deps import AnalyzeKey, Multipart, PalmsDep, SettingsDep
from palmpay.api.images import open_images
from palmpay.api.schemas import AnalyzeOut, LandmarkOut, QualityOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/capture", tags=["capture"])


@router.post("/analyze", response_model=AnalyzeOut)
def analyze(
    key: AnalyzeKey,
    _multipart: Annotated[None, Multipart],
    settings: SettingsDep,
    palms: PalmsDep,
    image: Annotated[UploadFile, File(description="One camera frame.")],
) -> AnalyzeOut:
    """ROI status, quality gates, handedness and landmarks of one frame (nothing is stored)."""
    with open_images([image], "image", settings) as [upload]:
        result = palms.analyze(upload).frame
        height, width = upload.image.shape[:2]
    quality = result.quality
    hand = result.roi.hand
    return AnalyzeOut(
        ok=result.good,
        roi_status=result.roi.status.value,
        reason=result.reason,
        quality=None if quality is None else QualityOut(
            sharpness=round(quality.sharpness, 2), brightness=round(quality.brightness, 2),
            palm_fraction=round(quality.palm_fraction, 4), problems=list(quality.problems)),
        handedness=hand.handedness if hand is not None else None,
        palm_width=round(result.roi.palm_width, 2),
        landmarks=None if hand is None else [
            LandmarkOut(x=round(float(x), 1), y=round(float(y), 1))
            for x, y in hand.landmarks[:, :2]],
        width=width,
        height=height,
    )
