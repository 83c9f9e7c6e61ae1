"""API keys: create (the secret is returned once), look up by secret, revoke.

A secret looks like ``pp_<scope>_<32 url-safe characters>`` (192 random bits). The database keeps
its SHA-256 (hex) and a display ``prefix``; the secret itself is never stored or logged.

Every key belongs to a merchant (``merchant``, :mod:`palmpay.payments.merchants`) and sees only
its customers and payments; a key whose row has no merchant does not authenticate.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from sqlalchemy import select

from palmpay.api.models import ApiKey, ApiKeyScope
from palmpay.db import Database, new_id, utcnow
from palmpay.payments.merchants import DEFAULT_MERCHANT_ID, get_merchant, owned_by
from palmpay.payments.validation import check_name
from palmpay.payments.views import Unix, View

__all__ = [
    "ApiKeyView",
    "create_api_key",
    "revoke_api_key",
    "authenticate",
    "list_api_keys",
    "hash_secret",
    "SECRET_PREFIX",
]

log = logging.getLogger(__name__)

SECRET_PREFIX = "pp_"
_PREFIX_SHOWN = 4  # random characters of the secret kept in ApiKey.prefix for display
_MAX_SECRET_LEN = 200


def _is_revoked(value: object) -> bool:  # a row's revoked_at, or the flag itself
    return value if isinstance(value, bool) else value is not None


class ApiKeyView(View):
    """An API key as the API shows it, read from its row: never its secret, except in the
    creation response (``secret``, shown once)."""

    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    scope: ApiKeyScope
    prefix: str
    created: Unix = Field(validation_alias="created_at")
    revoked: Annotated[bool, BeforeValidator(_is_revoked)] = Field(
        False, validation_alias="revoked_at")
    secret: str | None = Field(None, repr=False, description="Only in the creation response.")
    merchant: str | None = Field(None, validation_alias="merchant_id",
                                 description="The merchant whose customers and payments the "
                                             "key sees.")

    @property
    def active(self) -> bool:
        return not self.revoked


def _view(row: ApiKey) -> ApiKeyView:
    return ApiKeyView.model_validate(row)


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a secret (what ``api_keys.secret_hash`` holds)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_api_key(db: Database, name: str, scope: str,
                   merchant_id: str = DEFAULT_MERCHANT_ID) -> tuple[ApiKeyView, str]:
    """Create a key of ``merchant_id``; returns its view and the secret (shown once, never
    stored). ``name`` follows :func:`~palmpay.payments.validation.check_name`
    (``invalid_request`` otherwise); ``ValueError`` for a bad scope or an unknown merchant."""
    if get_merchant(db, merchant_id) is None:
        raise ValueError(f"no merchant {merchant_id}")
    if scope not in frozenset(ApiKeyScope):
        raise ValueError(f"scope must be one of {', '.join(ApiKeyScope)}, not {scope!r}")
    name = check_name(name)
    secret = f"{SECRET_PREFIX}{scope}_{secrets.token_urlsafe(24)}"
    prefix = secret[: len(SECRET_PREFIX) + len(scope) + 1 + _PREFIX_SHOWN]
    row = ApiKey(id=new_id("key"), name=name, scope=scope, prefix=prefix,
                 secret_hash=hash_secret(secret), created_at=utcnow(), merchant_id=merchant_id)
    with db.session() as session:
        session.add(row)
    log.info("created %s API key %s (%s) of merchant %s", scope, row.id, prefix, merchant_id)
    return _view(row), secret


def authenticate(db: Database, secret: str) -> ApiKeyView | None:
    """The active key whose secret this is, or None (unknown, malformed or revoked)."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > _MAX_SECRET_LEN:
        return None
    with db.session(readonly=True) as session:
        row = session.scalars(
            select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret))
        ).one_or_none()
        if row is None or row.revoked_at is not None or row.merchant_id is None:
            return None
        return _view(row)


def revoke_api_key(db: Database, key_id: str, merchant_id: str | None = None) -> ApiKeyView:
    """Revoke a key (idempotent); raises ``KeyError`` if there is no such key (or, with
    ``merchant_id``, it belongs to another merchant)."""
    with db.session() as session:
        row = session.get(ApiKey, key_id)
        if row is None or (merchant_id is not None and not owned_by(row.merchant_id,
                                                                    merchant_id)):
            raise KeyError(key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            log.info("revoked API key %s (%s)", row.id, row.prefix)
        return _view(row)


def list_api_keys(db: Database, merchant_id: str | None = None) -> list[ApiKeyView]:
    """Every key (only ``merchant_id``'s when given), oldest first."""
    stmt = select(ApiKey).order_by(ApiKey.created_at)
    if merchant_id is not None:
        stmt = stmt.where(ApiKey.merchant_id == merchant_id)
    with db.session(readonly=True) as session:
        return [_view(r) for r in session.scalars(stmt)]
