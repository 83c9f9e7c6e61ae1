"""Admin: webhook endpoints (the signing secret is returned once, on creation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from palmpay.api.deps import AdminKey, JsonBody, StateDep
from palmpay.api.schemas import WebhookEndpointIn, WebhookEndpointOut, unix
from palmpay.api.webhooks import create_endpoint

__all__ = ["router"]

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["admin"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookEndpointOut)
def create_webhook_endpoint(key: AdminKey, _json: Annotated[None, JsonBody], state: StateDep,
                            body: WebhookEndpointIn) -> WebhookEndpointOut:
    """Register a URL that receives every event, signed with ``PalmPay-Signature``."""
    view = create_endpoint(state.db, body.url)
    return WebhookEndpointOut(id=view.id, url=view.url, enabled=view.enabled,
                              created=unix(view.created_at), secret=view.secret)
