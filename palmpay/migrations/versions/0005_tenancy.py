"""Tenancy and abuse controls: merchants own keys, customers and payments; database-backed
rate-limit counters.

Revision ID: 0005_tenancy
Revises: 0004_intents
Create Date: 2026-12-03

- ``merchants``: one row per tenant. The migration creates the default merchant
  (:data:`DEFAULT_MERCHANT_ID`) and gives it every existing API key, customer, card and payment,
  so an upgraded single-store database keeps working unchanged.
- ``merchant_id`` on ``api_keys``, ``customers``, ``cards`` and ``payments`` (indexed, a foreign
  key to ``merchants``). It is NULL-able in the schema because SQLite can add a column with a
  foreign key only with a NULL default, and rebuilding those tables (each is referenced by
  others) is impossible inside the migration's transaction while foreign keys are enforced. The
  code always sets it, and a row without a merchant is visible to no API key (fail closed).
- ``uq_cards_active_fingerprint`` becomes per merchant: one shopper may enroll the same card at
  two merchants (two customers), never twice at one.
- ``rate_limit_counters``: fixed-window counters of :mod:`palmpay.api.ratelimit` shared by every
  API process.

Mirrors ``palmpay/payments/models.py`` and ``palmpay/api/models.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from palmpay.db import UTCDateTime

__all__ = ["revision", "down_revision", "branch_labels", "depends_on", "upgrade", "downgrade",
           "DEFAULT_MERCHANT_ID"]

revision = "0005_tenancy"
down_revision = "0004_intents"
branch_labels = None
depends_on = None

#: The merchant that owns everything created before tenancy (the same constant as
#: :data:`palmpay.payments.merchants.DEFAULT_MERCHANT_ID`; a migration never imports models).
DEFAULT_MERCHANT_ID = "mer_default"
_OWNED = ("api_keys", "customers", "cards", "payments", "webhook_endpoints", "events")


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchants")),
    )
    merchants = sa.table("merchants", sa.column("id", sa.String()), sa.column("name", sa.String()),
                         sa.column("created_at", UTCDateTime()))
    op.bulk_insert(merchants, [{"id": DEFAULT_MERCHANT_ID, "name": "Default merchant",
                                "created_at": datetime.now(UTC)}])
    for table in _OWNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(
                "merchant_id", sa.String(40),
                sa.ForeignKey("merchants.id", name=op.f(f"fk_{table}_merchant_id_merchants")),
                nullable=True))
        op.create_index(op.f(f"ix_{table}_merchant_id"), table, ["merchant_id"])
        op.execute(sa.text(f"UPDATE {table} SET merchant_id = :merchant")  # noqa: S608
                   .bindparams(merchant=DEFAULT_MERCHANT_ID))
    op.drop_index("uq_cards_active_fingerprint", table_name="cards")
    op.create_index("uq_cards_active_fingerprint", "cards", ["merchant_id", "fingerprint"],
                    unique=True, sqlite_where=sa.text("status = 'active'"),
                    postgresql_where=sa.text("status = 'active'"))
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_counters")),
    )
    op.create_index(op.f("ix_rate_limit_counters_expires_at"), "rate_limit_counters",
                    ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_limit_counters_expires_at"), table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
    # Fails if one card is active at two merchants: unenroll one of them first.
    op.drop_index("uq_cards_active_fingerprint", table_name="cards")
    op.create_index("uq_cards_active_fingerprint", "cards", ["fingerprint"], unique=True,
                    sqlite_where=sa.text("status = 'active'"),
                    postgresql_where=sa.text("status = 'active'"))
    for table in reversed(_OWNED):
        op.drop_index(op.f(f"ix_{table}_merchant_id"), table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"fk_{table}_merchant_id_merchants"), type_="foreignkey")
            batch.drop_column("merchant_id")
    op.drop_table("merchants")
