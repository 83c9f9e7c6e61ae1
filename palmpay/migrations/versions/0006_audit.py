"""Biometric privacy: the audit log of biometric and payment operations, and what retention needs.

Revision ID: 0006_audit
Revises: 0005_tenancy
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from palmpay.db import UTCDateTime  # noqa: F401

__all__ = ["revision", "down_revision", "branch_labels", "depends_on", "upgrade", "downgrade"]

revision = "0006_audit"
down_revision = "0005_tenancy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
