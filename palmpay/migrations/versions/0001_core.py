"""Payments core: customers, cards, palm_templates, payments, refunds, ledger_entries.

Revision ID: 0001_core
Revises:
Create Date: 2025-01-01

Mirrors ``palmpay/payments/models.py`` (a test compares them). ``ledger_entries`` gets triggers
that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL): the ledger is append-only in the
database too, not only in the code.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from palmpay.db import UTCDateTime

__all__ = ["revision", "down_revision", "branch_labels", "depends_on", "upgrade", "downgrade"]

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None

_BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_APPEND_ONLY = "ledger_entries is append-only"


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("consent_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("status IN ('active', 'deleted')", name=op.f("ck_customers_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("token", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("brand", sa.String(20), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("exp_month", sa.SmallInteger(), nullable=False),
        sa.Column("exp_year", sa.SmallInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=True),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=True),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("status IN ('active', 'revoked')", name=op.f("ck_cards_status")),
        sa.CheckConstraint(
            "(status = 'active' AND kek_id IS NOT NULL AND wrapped_dek IS NOT NULL "
            "AND nonce IS NOT NULL AND ciphertext IS NOT NULL) OR "
            "(status = 'revoked' AND kek_id IS NULL AND wrapped_dek IS NULL "
            "AND nonce IS NULL AND ciphertext IS NULL)",
            name=op.f("ck_cards_envelope"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_cards_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cards")),
        sa.UniqueConstraint("token", name=op.f("uq_cards_token")),
    )
    op.create_index(op.f("ix_cards_customer_id"), "cards", ["customer_id"])
    op.create_index(
        "uq_cards_active_fingerprint",
        "cards",
        ["fingerprint"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "palm_templates",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_palm_templates_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_palm_templates")),
    )
    op.create_index(op.f("ix_palm_templates_customer_id"), "palm_templates", ["customer_id"])
    op.create_table(
        "payments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(40), nullable=False),
        sa.Column("card_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("capture_method", sa.String(12), nullable=False),
        sa.Column("amount_capturable", sa.BigInteger(), nullable=False),
        sa.Column("amount_received", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("auth_code", sa.String(64), nullable=True),
        sa.Column("decline_code", sa.String(64), nullable=True),
        sa.Column("terminal", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('requires_capture', 'succeeded', 'canceled', 'failed')",
            name=op.f("ck_payments_status"),
        ),
        sa.CheckConstraint(
            "capture_method IN ('automatic', 'manual')", name=op.f("ck_payments_capture_method")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.CheckConstraint(
            "amount_capturable >= 0 AND amount_received >= 0 AND amount_refunded >= 0",
            name=op.f("ck_payments_amounts_nonnegative"),
        ),
        sa.CheckConstraint(
            "amount_refunded <= amount_received AND amount_received + amount_capturable <= amount",
            name=op.f("ck_payments_amounts_bounded"),
        ),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name=op.f("fk_payments_card_id_cards")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_payments_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
    )
    op.create_index(op.f("ix_payments_card_id"), "payments", ["card_id"])
    op.create_index("ix_payments_customer_created", "payments", ["customer_id", "created_at"])
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.CheckConstraint("status IN ('succeeded')", name=op.f("ck_refunds_status")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_refunds_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    op.create_index(op.f("ix_refunds_payment_id"), "refunds", ["payment_id"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", _BigIntId, autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("refund_id", sa.String(40), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('authorization', 'decline', 'capture', 'release', 'refund')",
            name=op.f("ck_ledger_entries_kind"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_entries_amount_positive")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_ledger_entries_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"], ["refunds.id"], name=op.f("fk_ledger_entries_refund_id_refunds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(op.f("ix_ledger_entries_payment_id"), "ledger_entries", ["payment_id"])
    op.create_index(op.f("ix_ledger_entries_refund_id"), "ledger_entries", ["refund_id"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"
        )
        op.execute(
            "CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{event.lower()} BEFORE {event} ON "
                f"ledger_entries BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_truncate ON ledger_entries")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_change ON ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
    for table in ("ledger_entries", "refunds", "payments", "palm_templates", "cards", "customers"):
        op.drop_table(table)
