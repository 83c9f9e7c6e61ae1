"""Operator status: ``GET /v1/status`` (admin keys): the gallery and its open-set operating
point — the threshold at the current number of enrolled samples, N_safe, and whether payments
need the phone digits. An admin key sees its own merchant's part of the gallery (what its
terminals search), never the size of another merchant's."""

from __future__ import annotations

from fastapi import APIRouter

from palmpay.api.deps import AdminKey, PalmsDep, ServiceDep, merchant_gallery, merchant_of
from palmpay.api.schemas import OperatingPointOut, StatusOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/status", tags=["status"])


@router.get("", response_model=StatusOut)
def get_status(key: AdminKey, palms: PalmsDep, service: ServiceDep) -> StatusOut:
    """The merchant's gallery: its size, threshold and N_safe."""
    ids = service.customer_ids(merchant_of(key))
    within = merchant_gallery(service, palms, merchant_of(key))
    return StatusOut(customers=len(ids),
                     operating_point=OperatingPointOut(**palms.operating_point(within)))
