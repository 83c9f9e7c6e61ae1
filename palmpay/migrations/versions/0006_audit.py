"""Biometric privacy: the audit log of biometric and payment operations, and what retention needs.

Revision ID: 0006_audit
Revises: 0005_tenancy
Create Date: 2026-12-03

- ``audit_events``: one row per biometric or payment operation (who = API key id or ``cli``,
  what, object id, outcome, when); never a card number, a template or a name
  (:mod:`palmpay.payments.audit`). Append-only like the ledger: triggers refuse UPDATE and
  DELETE (and TRUNCATE on PostgreSQL).
- ``palm_templates.transform_id``: the template key whose cancelable transform the stored
  template is under (:mod:`palmpay.payments.cancelable`); NULL for templates stored in clear
  before this revision (renewed by ``palmpay keys renew-templates``).
- ``customers.templates_purged_at``: when the retention policy deleted the customer's palm
  templates (``palmpay retention apply``); such a customer can no longer pay by palm.

Mirrors ``palmpay/payments/models.py`` (``tests/api/test_migration.py`` compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from palmpay.db import UTCDateTime

__all__ = ["revision", "down_revision", "branch_labels", "depends_on", "upgrade", "downgrade"]

revision = "0006_audit"
down_revision = "0005_tenancy"
branch_labels = None
depends_on = None

_BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_APPEND_ONLY = "audit_events is append-only"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", _BigIntId, autoincrement=True, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_created_at"), "audit_events", ["created_at"])
    op.create_index(op.f("ix_audit_events_object_id"), "audit_events", ["object_id"])
    with op.batch_alter_table("palm_templates") as batch:
        batch.add_column(sa.Column("transform_id", sa.String(64), nullable=True))
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("templates_purged_at", UTCDateTime(), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{event.lower()} BEFORE {event} ON "
                f"audit_events BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("templates_purged_at")
    with op.batch_alter_table("palm_templates") as batch:
        batch.drop_column("transform_id")
    op.drop_index(op.f("ix_audit_events_object_id"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_created_at"), table_name="audit_events")
    op.drop_table("audit_events")
