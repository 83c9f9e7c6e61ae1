"""FastAPI dependencies: the app's shared state, settings, services and API-key scopes.

Routes declare what they need with ``Annotated`` aliases::

    def create_customer(key: KioskKey, service: ServiceDep, palms: PalmsDep, ...): ...

``require_scope(*scopes)`` authenticates ``Authorization: Bearer <secret>`` and returns the
:class:`~palmpay.api.keys.ApiKeyView`: 401 ``unauthorized`` when the header is missing or the key
unknown or revoked, 403 ``forbidden`` when its scope is not one of ``scopes`` (an ``admin`` key
passes every scope). It also applies the abuse controls of :mod:`palmpay.api.ratelimit`: a client
address that sent too many unknown keys answers 429 ``rate_limited`` before its key is looked up,
every unknown key counts towards that back-off, and every authenticated request counts towards
its key's ``rate_limit_requests``. Every key belongs to one merchant (:func:`merchant_of`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from palmpay.api.keys import ApiKeyView, authenticate
from palmpay.api.palms import PalmDirectory
from palmpay.api.ratelimit import BadKeyBackoff, RateLimits
from palmpay.api.webhooks import WebhookDispatcher
from palmpay.config import Settings
from palmpay.db import Database
from palmpay.payments.errors import PaymentError
from palmpay.payments.service import PaymentService

if TYPE_CHECKING:
    from palmpay.api.replica import IndexReplica

__all__ = [
    "AdminKey",
    "AnalyzeKey",
    "AppState",
    "KioskKey",
    "PalmsDep",
    "ServiceDep",
    "SettingsDep",
    "StateDep",
    "TerminalKey",
    "JsonBody",
    "Multipart",
    "get_state",
    "merchant_gallery",
    "merchant_of",
    "require_json",
    "require_multipart",
    "require_scope",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppState:
    """Everything the routes share, built once by the app's lifespan."""

    settings: Settings
    db: Database
    service: PaymentService
    palms: PalmDirectory
    dispatcher: WebhookDispatcher
    clock: Callable[[], datetime]
    replica: IndexReplica | None = None  # keeps palms in step with the database


def get_state(request: Request) -> AppState:
    state = getattr(request.app.state, "palmpay", None)
    if state is None:
        raise PaymentError("service_unavailable", "the server is starting")
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def _settings(state: StateDep) -> Settings:
    return state.settings


def _service(state: StateDep) -> PaymentService:
    return state.service


def _palms(state: StateDep) -> PalmDirectory:
    return state.palms


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[PaymentService, Depends(_service)]
PalmsDep = Annotated[PalmDirectory, Depends(_palms)]

_bearer = HTTPBearer(auto_error=False, description="API key: `pp_<scope>_...`")


def require_scope(*scopes: str) -> Callable[..., ApiKeyView]:
    """A dependency returning the authenticated API key if its scope is one of ``scopes``."""
    allowed = frozenset(scopes) | {"admin"}

    def dependency(
        state: StateDep,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKeyView:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise PaymentError("unauthorized", "send Authorization: Bearer <API key>",
                           headers={"WWW-Authenticate": "Bearer"})
        address = request.client.host if request.client is not None else "unknown"
        backoff = BadKeyBackoff(state.db, state.settings, state.clock)
        backoff.check(address)
        key = authenticate(state.db, credentials.credentials)
        if key is None:
            backoff.failed(address)
            raise PaymentError("unauthorized", "unknown or revoked API key",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        RateLimits(state.db, state.settings, state.clock).requests(key.id)
        if key.scope not in allowed:
            raise PaymentError("forbidden", f"a {key.scope} key cannot do this (needs "
                           f"{' or '.join(sorted(allowed))})")
        return key

    dependency.__name__ = "require_" + "_or_".join(scopes or ("admin",))
    return dependency


def merchant_of(key: ApiKeyView) -> str:
    """The merchant of an authenticated key (:func:`~palmpay.api.keys.authenticate` refuses
    keys without one)."""
    if key.merchant is None:
        raise PaymentError("unauthorized", "unknown or revoked API key")
    return key.merchant


def merchant_gallery(service: PaymentService, palms: PalmDirectory, merchant: str
                     ) -> list[str] | None:
    """The customers a palm search for ``merchant`` may return: None (search the whole index,
    with its FAISS shortlist) when they are all the index holds (one merchant), else their ids
    (the search then scores every sample of those customers)."""
    ids = service.customer_ids(merchant)
    return None if len(ids) == palms.customers else ids


def require_multipart(request: Request) -> None:
    """415 ``unsupported_media_type`` unless the body is ``multipart/form-data``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise PaymentError("unsupported_media_type",
                       "this endpoint takes multipart/form-data (files and form fields)")


def require_json(request: Request) -> None:
    """415 ``unsupported_media_type`` when a body is sent that is not ``application/json``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers)
    if has_body and content_type != "application/json" and not content_type.endswith("+json"):
        raise PaymentError("unsupported_media_type", "this endpoint takes application/json")


Multipart = Depends(require_multipart)
JsonBody = Depends(require_json)

KioskKey = Annotated[ApiKeyView, Depends(require_scope("kiosk"))]
TerminalKey = Annotated[ApiKeyView, Depends(require_scope("terminal"))]
AdminKey = Annotated[ApiKeyView, Depends(require_scope("admin"))]
#: The capture-quality helper: kiosks and terminals.
AnalyzeKey = Annotated[ApiKeyView, Depends(require_scope("kiosk", "terminal"))]
