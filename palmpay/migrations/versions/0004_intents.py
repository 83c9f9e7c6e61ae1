"""Authorisation intents: an acquirer call is recorded before it is made and reconciled on
start-up (crash-safe payments).

Revision ID: 0004_intents
Revises: 0003_narrowing
Create Date: 2026-12-03

``authorization_intents`` (one row per acquirer authorisation, committed before the call),
``service_instances`` (running API processes and their leases) and four columns of
``idempotency_keys``: the claim's owner (instance id, pid) and the object the request created
(``result_type``, ``result_id``). Mirrors ``palmpay/payments/models.py`` and
``palmpay/api/models.py``; see ``palmpay/payments/intents.py`` and ``palmpay/api/recovery.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from palmpay.db import UTCDateTime

__all__ = ["revision", "down_revision", "branch_labels", "depends_on", "upgrade", "downgrade"]

revision = "0004_intents"
down_revision = "0003_narrowing"
branch_labels = None
depends_on = None

_KEY_COLUMNS = (
    ("owner_id", sa.String(40)),
    ("owner_pid", sa.BigInteger()),
    ("result_type", sa.String(16)),
    ("result_id", sa.String(40)),
)


def upgrade() -> None:
    op.create_table(
        "service_instances",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.BigInteger(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=False),
        sa.Column("stopped_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_instances")),
    )
    op.create_table(
        "authorization_intents",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("card_id", sa.String(40), nullable=False),
        sa.Column("card_token", sa.String(40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("capture_method", sa.String(12), nullable=False),
        sa.Column("terminal", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(40), nullable=False),
        sa.Column("idempotency_key_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("state IN ('open', 'completed', 'voided')",
                           name=op.f("ck_authorization_intents_state")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_authorization_intents_amount_positive")),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"],
                                name=op.f("fk_authorization_intents_card_id_cards")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_authorization_intents_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorization_intents")),
    )
    op.create_index(op.f("ix_authorization_intents_state"), "authorization_intents", ["state"])
    op.create_index(op.f("ix_authorization_intents_idempotency_key_id"),
                    "authorization_intents", ["idempotency_key_id"])
    with op.batch_alter_table("idempotency_keys") as batch:
        for name, type_ in _KEY_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        for name, _type in reversed(_KEY_COLUMNS):
            batch.drop_column(name)
    op.drop_index(op.f("ix_authorization_intents_idempotency_key_id"),
                  table_name="authorization_intents")
    op.drop_index(op.f("ix_authorization_intents_state"), table_name="authorization_intents")
    op.drop_table("authorization_intents")
    op.drop_table("service_instances")
