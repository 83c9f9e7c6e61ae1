"""Admin: API keys (the secret is returned once, on creation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from palmpay.api.deps import AdminKey, JsonBody, StateDep
from palmpay.api.keys import ApiKeyView, create_api_key, revoke_api_key
from palmpay.api.schemas import ApiKeyIn, Text
from palmpay.payments.errors import PaymentError

__all__ = ["router"]

router = APIRouter(prefix="/v1/api_keys", tags=["admin"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyView)
def create_key(key: AdminKey, _json: Annotated[None, JsonBody], state: StateDep,
               body: ApiKeyIn) -> ApiKeyView:
    """Create a kiosk, terminal or admin key of the creating admin key's merchant; store the
    returned ``secret`` now."""
    if key.merchant is None:  # authenticate() refuses such keys; kept for the type checker
        raise PaymentError("forbidden", "this key belongs to no merchant")
    view, secret = create_api_key(state.db, body.name, body.scope, key.merchant)
    return view.model_copy(update={"secret": secret})


@router.delete("/{key_id}", response_model=ApiKeyView)
def revoke_key(key: AdminKey, state: StateDep, key_id: Text) -> ApiKeyView:
    """Revoke a key of this admin key's merchant; it stops working at once."""
    try:
        return revoke_api_key(state.db, key_id, key.merchant)
    except KeyError:
        raise PaymentError("not_found", f"no API key {key_id}") from None
