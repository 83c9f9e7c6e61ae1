"""Scale-out: the palm change log that keeps every API process's index replica in step.

Revision ID: 0007_palm_changes
Revises: 0006_audit
Create Date: 2026-12-10

- ``palm_changes``: one row per enrollment, templates added, unenrollment or retention purge,
  written in the same transaction as the change (:mod:`palmpay.payments.changes`): ``seq``
  (``BIGSERIAL`` on PostgreSQL, the rowid on SQLite), ``customer_id``, ``kind``, ``created_at``.
  Append-only by convention (no trigger: an operator may prune rows older than every replica's
  position). Existing customers get no rows: a replica loads every template at start and only
  applies the changes after the position it loaded at.

Mirrors ``palmpay/payments/changes.py`` (``tests/api/test_replica_log.py`` compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from palmpay.db import UTCDateTime

__all__ = ["revision", "down_revision", "branch_labels", "depends_on", "upgrade", "downgrade"]

revision = "0007_palm_changes"
down_revision = "0006_audit"
branch_labels = None
depends_on = None

_BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_KINDS = "kind IN ('enroll', 'templates', 'delete', 'purge')"


def upgrade() -> None:
    op.create_table(
        "palm_changes",
        sa.Column("seq", _BigIntId, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(_KINDS, name=op.f("ck_palm_changes_kind")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_palm_changes")),
    )


def downgrade() -> None:
    op.drop_table("palm_changes")
