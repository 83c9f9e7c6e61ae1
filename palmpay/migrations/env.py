"""Alembic environment for PalmPay.

Run programmatically by :func:`palmpay.db.upgrade`, which passes an open connection in
``config.attributes["connection"]``. For authoring revisions with the ``alembic`` command, set
``sqlalchemy.url`` in the Config (or ``PALMPAY_DATABASE_URL``) and ``script_location`` to this
folder; ``target_metadata`` holds every model so ``--autogenerate`` sees them all.
"""

from __future__ import annotations

import importlib
import logging

from alembic import context

from palmpay.db import Base, make_engine

__all__: list[str] = []

log = logging.getLogger(__name__)

# Import the model modules so that Base.metadata is complete (autogenerate only; migrations
# themselves never read the models).
importlib.import_module("palmpay.payments.models")
try:
    importlib.import_module("palmpay.api.models")
except ModuleNotFoundError as exc:  # the API package is optional for the payments core
    if exc.name not in ("palmpay.api", "palmpay.api.models"):
        raise

target_metadata = Base.metadata
#: pg_advisory_xact_lock key serialising concurrent upgrades on PostgreSQL ("PalmPay" in hex).
_PG_LOCK_KEY = 0x50616C6D506179


def _run(connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        from palmpay.config import get_settings

        url = get_settings().resolved_database_url()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_online()
