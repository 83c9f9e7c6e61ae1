"""Admin: API keys (the secret is returned once, on creation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from palmpay.api.deps import AdminKey, JsonBody, StateDep
from palmpay.api.keys import ApiKeyView, create_api_key, revoke_api_key
from palmpay.api.schemas import ApiKeyIn, ApiKeyOut, unix
from palmpay.payments.errors import PaymentError

__all__ = ["router"]

router = APIRouter(prefix="/v1/api_keys", tags=["admin"])


def _out(view: ApiKeyView, secret: str | None = None) -> ApiKeyOut:
    return ApiKeyOut(id=view.id, name=view.name, scope=view.scope, prefix=view.prefix,
                     created=unix(view.created_at), revoked=view.revoked_at is not None,
                     secret=secret)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyOut)
def create_key(key: AdminKey, _json: Annotated[None, JsonBody], state: StateDep,
               body: ApiKeyIn) -> ApiKeyOut:
    """Create a kiosk, terminal or admin key; store the returned ``secret`` now."""
    view, secret = create_api_key(state.db, body.name, body.scope)
    return _out(view, secret)


@router.delete("/{key_id}", response_model=ApiKeyOut)
def revoke_key(key: AdminKey, state: StateDep, key_id: str) -> ApiKeyOut:
    """Revoke a key; it stops working at once."""
    try:
        return _out(revoke_api_key(state.db, key_id))
    except KeyError:
        raise PaymentError("not_found", f"no API key {key_id}") from None
