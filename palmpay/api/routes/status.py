"""Operator status: ``GET /v1/status`` (admin keys): the gallery and its open-set operating
point — the threshold at the current number of enrolled samples, N_safe, and whether payments
need the phone digits."""

from __future__ import annotations

from fastapi import APIRouter

from palmpay.api.deps import AdminKey, PalmsDep
from palmpay.api.schemas import OperatingPointOut, StatusOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/status", tags=["status"])


@router.get("", response_model=StatusOut)
def get_status(key: AdminKey, palms: PalmsDep) -> StatusOut:
    """The gallery's size, threshold and N_safe."""
    return StatusOut(customers=palms.customers,
                     operating_point=OperatingPointOut(**palms.operating_point()))
