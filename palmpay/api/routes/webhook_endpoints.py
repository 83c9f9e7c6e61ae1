"""Admin: webhook endpoints (the signing secret is returned once, on creation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from palmpay.api.deps import AdminKey, JsonBody, StateDep
from palmpay.api.schemas import WebhookEndpointIn
from palmpay.api.webhooks import WebhookEndpointView, create_endpoint
from palmpay.payments.errors import PaymentError

__all__ = ["router"]

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["admin"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookEndpointView)
def create_webhook_endpoint(key: AdminKey, _json: Annotated[None, JsonBody], state: StateDep,
                            body: WebhookEndpointIn) -> WebhookEndpointView:
    """Register a URL that receives every event of the admin key's merchant, signed with
    ``PalmPay-Signature``. Its host must be a public internet address (422
    ``webhook_url_refused`` otherwise)."""
    if key.merchant is None:  # authenticate() refuses such keys; kept for the type checker
        raise PaymentError("forbidden", "this key belongs to no merchant")
    return create_endpoint(state.db, body.url, merchant=key.merchant,
                           allow_private=state.settings.webhook_allow_private)
