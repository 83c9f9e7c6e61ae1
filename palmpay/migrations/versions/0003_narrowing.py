"""Narrowing: customers.phone_hash and terminal_lockouts.

Revision ID: 0003_narrowing
Revises: 0002_api
Create Date: 2026-12-03

Past N_safe a payment is narrowed by the last 4 digits of the shopper's phone, stored as a keyed
hash (``PaymentService`` / ``Vault.phone_hash``); ``terminal_lockouts`` counts a terminal's wrong
tries (``palmpay/api/narrowing.py``). Mirrors ``palmpay/payments/models.py`` and
``palmpay/api/models.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from palmpay.db import UTCDateTime

__all__ = ["revision", "down_revision", "branch_labels", "depends_on", "upgrade", "downgrade"]

revision = "0003_narrowing"
down_revision = "0002_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("phone_hash", sa.String(64), nullable=True))
    op.create_index(op.f("ix_customers_phone_hash"), "customers", ["phone_hash"])
    op.create_table(
        "terminal_lockouts",
        sa.Column("terminal_id", sa.String(40), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", name=op.f("pk_terminal_lockouts")),
    )


def downgrade() -> None:
    op.drop_table("terminal_lockouts")
    op.drop_index(op.f("ix_customers_phone_hash"), table_name="customers")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("phone_hash")
