"""Refunds of captured payments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from palmpay.api.audited import RefundAudit
from palmpay.api.deps import JsonBody, ServiceDep, TerminalKey
from palmpay.api.routes.payments import visible_payment
from palmpay.api.schemas import RefundIn, Text
from palmpay.payments.errors import PaymentError
from palmpay.payments.views import RefundView

__all__ = ["router"]

router = APIRouter(prefix="/v1/refunds", tags=["refunds"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RefundView)
def create_refund(key: TerminalKey, audit: RefundAudit, _json: Annotated[None, JsonBody],
                  service: ServiceDep, body: RefundIn) -> RefundView:
    """Refund (part of) a succeeded payment; ``amount`` defaults to all that is left."""
    audit.object_id = body.payment
    visible_payment(service, key, body.payment)
    refund = service.refund(body.payment, body.amount)
    audit.value = refund.status
    return refund


@router.get("/{refund_id}", response_model=RefundView)
def get_refund(key: TerminalKey, service: ServiceDep, refund_id: Text) -> RefundView:
    refund = service.get_refund(refund_id)
    try:
        visible_payment(service, key, refund.payment)
    except PaymentError:
        raise PaymentError("refund_not_found", f"no refund {refund_id}",
                           extra={"refund": refund_id}) from None
    return refund
