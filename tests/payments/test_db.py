"""palmpay.db and the migrations on both backends; build_service from settings."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from palmpay.config import Settings
from palmpay.db import Base, Database, current_revision, make_engine, normalise_url, upgrade
from palmpay.payments.keys import KeyringError
from palmpay.payments.models import Customer
from palmpay.payments.service import build_service
from tests.payments.conftest import VISA, card, make_templates

CORE_TABLES = {"customers", "cards", "palm_templates", "payments", "refunds", "ledger_entries"}


def test_migration_matches_models(db) -> None:
    import palmpay.payments.models  # noqa: F401 - registers the tables

    def ours(obj, name, type_, reflected, compare_to):
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return getattr(table, "name", name) in CORE_TABLES

    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": ours}
        )
        assert compare_metadata(ctx, Base.metadata) == []
    assert set(inspect(db.engine).get_table_names()) >= CORE_TABLES


def test_upgrade_idempotent_and_downgrade(db) -> None:
    head = current_revision(db.engine)
    upgrade(db.engine)
    assert current_revision(db.engine) == head
    from alembic import command

    from palmpay.db import _alembic_config

    with db.engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "base")
    assert not CORE_TABLES & set(inspect(db.engine).get_table_names())
    upgrade(db.engine)
    assert current_revision(db.engine) == head


def test_session_commits_and_rolls_back(db) -> None:
    now = datetime.now().astimezone()
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(Customer(id="cus_a", name="A", status="active", consent_at=now, created_at=now))
        s.flush()
        raise RuntimeError("boom")
    with db.session(readonly=True) as s:
        assert s.get(Customer, "cus_a") is None
    with db.session() as s:
        s.add(Customer(id="cus_a", name="A", status="active", consent_at=now, created_at=now))
    with db.session(readonly=True) as s:
        row = s.get(Customer, "cus_a")
    assert row.name == "A" and row.created_at.utcoffset().total_seconds() == 0  # tz-aware UTC
    with pytest.raises(Exception, match="naive"), db.session() as s:
        s.add(Customer(id="cus_b", name="B", status="active", consent_at=datetime.now(),
                       created_at=now))


def test_sqlite_connection_settings(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/sub/dir/x.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    engine.dispose()
    memory = Database("sqlite://")
    upgrade(memory.engine)
    with memory.session() as s:
        assert s.execute(text("SELECT count(*) FROM customers")).scalar() == 0
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_build_service_dev_mode(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PALMPAY_KEYRING", raising=False)
    monkeypatch.delenv("PALMPAY_KEYRING_FILE", raising=False)
    with pytest.raises(KeyringError, match="PALMPAY_KEYRING_FILE"):
        build_service(Settings(data_dir=tmp_path))
    assert not (tmp_path / "palmpay.db").exists()  # failed before touching the database
    settings = Settings(data_dir=tmp_path, dev_mode=True, sim_card_limit=500)
    svc = build_service(settings)
    assert (tmp_path / "palmpay.db").is_file() and (tmp_path / "keyring.json").is_file()
    cus = svc.create_customer("Dev", card(VISA), make_templates(1), True)
    assert svc.authorize(cus.id, 500, "eur").status == "succeeded"
    with pytest.raises(Exception, match="insufficient"):
        svc.authorize(cus.id, 1, "eur")
    svc.db.dispose()
    again = build_service(settings)  # restart: same keyring, same data
    assert [who for who, _ in again.templates()] == [cus.id]
    again.db.dispose()


def test_sqlite_writers_lock_at_begin_readers_do_not(tmp_path) -> None:
    import sqlite3
    import threading

    db = Database(f"sqlite:///{tmp_path}/lock.db")
    upgrade(db.engine)
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db.session() as s:  # BEGIN IMMEDIATE: the write lock is taken here, before any write
            s.execute(text("SELECT 1"))
            holding.set()
            release.wait(120)

    t = threading.Thread(target=writer)
    t.start()
    assert holding.wait(10)
    try:
        with db.session(readonly=True) as s:  # a reader is not blocked by the writer:
            assert s.execute(text("SELECT count(*) FROM payments")).scalar() == 0
        # it finished while the writer still held its lock (a blocked reader returns only
        # after the writer let go, which it does only when told, below, or after 120 s).
        assert t.is_alive() and not release.is_set()
        probe = sqlite3.connect(tmp_path / "lock.db", timeout=0, isolation_level=None)
        try:  # another writer would wait for the lock: probe without waiting
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                probe.execute("BEGIN IMMEDIATE")
        finally:
            probe.close()
    finally:
        release.set()
        t.join()
        db.dispose()


def test_postgres_unreachable_skips_or_fails_in_ci(monkeypatch) -> None:
    import tests.dbfixtures as fx

    monkeypatch.setattr(fx, "_pg_problem", lambda: "OperationalError: connection refused")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="127.0.0.1:5432 unreachable"):
        fx.require_postgres()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        fx.require_postgres()
