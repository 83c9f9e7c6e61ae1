"""Merchants: the tenants of one PalmPay deployment.

Every API key, customer, card and payment belongs to one merchant (``merchant_id``, migration
``0005_tenancy``). An API key — kiosk, terminal or admin — sees only its own merchant's customers
and payments: the others answer 404 as if they did not exist, and the palm search at a
terminal covers only its merchant's customers (a shopper enrolled at merchant A is *not
recognised* at merchant B's terminal; they may enroll there too, as a separate customer with
the same palm and card). Operators create merchants with ``palmpay merchants create`` and their
first key with ``palmpay terminals create --merchant``; an admin key's ``POST /v1/api_keys``
creates keys of its own merchant only.

The migration gives every row that existed before tenancy to :data:`DEFAULT_MERCHANT_ID`, which
is also the merchant of keys and customers created without one.
"""

from __future__ import annotations

import logging

from pydantic import Field
from sqlalchemy import select

from palmpay.db import Database, new_id, utcnow
from palmpay.payments.models import Merchant
from palmpay.payments.views import Unix, View

__all__ = [
    "DEFAULT_MERCHANT_ID",
    "MerchantView",
    "create_merchant",
    "get_merchant",
    "list_merchants",
    "owned_by",
]

log = logging.getLogger(__name__)

#: The merchant created by the migration; it owns everything that predates tenancy.
DEFAULT_MERCHANT_ID = "mer_default"


class MerchantView(View):
    """A merchant: its id and display name."""

    id: str
    name: str
    created: Unix = Field(validation_alias="created_at")


def owned_by(row_merchant: str | None, merchant: str | None) -> bool:
    """Whether a row of ``row_merchant`` is visible to a key of ``merchant``: both set and
    equal (a row or key without a merchant sees and is seen by nobody)."""
    return row_merchant is not None and merchant is not None and row_merchant == merchant


def create_merchant(db: Database, name: str) -> MerchantView:
    """A new merchant named ``name`` (1 to 200 characters)."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValueError("a merchant name must be 1 to 200 characters")
    row = Merchant(id=new_id("mer"), name=name, created_at=utcnow())
    with db.session() as session:
        session.add(row)
    log.info("created merchant %s", row.id)
    return MerchantView.model_validate(row)


def get_merchant(db: Database, merchant_id: str) -> MerchantView | None:
    """The merchant, or None."""
    with db.session(readonly=True) as session:
        row = session.get(Merchant, merchant_id)
        return None if row is None else MerchantView.model_validate(row)


def list_merchants(db: Database) -> list[MerchantView]:
    """Every merchant, oldest first."""
    with db.session(readonly=True) as session:
        return [MerchantView.model_validate(r) for r in session.scalars(
            select(Merchant).order_by(Merchant.created_at, Merchant.id))]
