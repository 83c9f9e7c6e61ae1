"""Migrations 0002_api and 0003_narrowing create exactly the tables of palmpay/api/models.py
(and customers.phone_hash), and downgrade."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import palmpay.api.models  # noqa: F401 - registers the tables
from palmpay.db import Base, _alembic_config, current_revision, make_engine, upgrade

API_TABLES = {"api_keys", "idempotency_keys", "events", "webhook_endpoints",
              "webhook_deliveries", "terminal_lockouts", "authorization_intents",
              "service_instances", "merchants", "rate_limit_counters", "audit_events"}


def test_migration_matches_models(db_url):
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == "0007_palm_changes"

        def ours(obj, name, type_, reflected, compare_to):
            table = obj if type_ == "table" else getattr(obj, "table", None)
            return getattr(table, "name", name) in API_TABLES | {"customers"}

        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": ours})
            assert compare_metadata(ctx, Base.metadata) == []

        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0001_core")
        assert not API_TABLES & set(inspect(engine).get_table_names())
        assert current_revision(engine) == "0001_core"
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= API_TABLES
    finally:
        engine.dispose()
