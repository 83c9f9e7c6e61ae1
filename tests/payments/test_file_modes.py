"""Local files are private to the service account: the data folder 0700, the SQLite database
and its ``-wal``/``-shm`` 0600, the dev keyring 0600; a keyring file open to group or others
refuses the start-up (tests/payments/test_keys.py).

Found by the attack: under umask 022 the SQLite file and the data folder were world-readable
(card envelopes, palm templates, the dev keyring beside them).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from palmpay.config import Settings
from palmpay.db import Database, private_sqlite_file, upgrade
from palmpay.payments.keys import KeyringError
from palmpay.payments.service import build_service
from tests.payments.conftest import card, make_templates


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_data_dir_database_and_keyring_are_private(tmp_path, monkeypatch, umask_022):
    for var in ("PALMPAY_KEYRING", "PALMPAY_KEYRING_FILE", "PALMPAY_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "var" / "palmpay"
    service = build_service(Settings(data_dir=data, dev_mode=True))
    try:
        service.create_customer("Ada", card(), make_templates(1), consent=True)  # WAL writes
        db_file = data / "palmpay.db"
        wal, shm = db_file.with_name("palmpay.db-wal"), db_file.with_name("palmpay.db-shm")
        assert wal.exists() and shm.exists()
        assert _mode(data) == 0o700
        assert {_mode(p) for p in (db_file, wal, shm, data / "keyring.json")} == {0o600}
    finally:
        service.db.dispose()


def test_existing_open_database_is_tightened(tmp_path, umask_022, caplog):
    path = tmp_path / "old.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    db.dispose()
    path.chmod(0o644)
    private_sqlite_file(path)
    assert _mode(path) == 0o600
    assert any("now 0600" in r.getMessage() for r in caplog.records)
    db = Database(f"sqlite:///{path}")
    with db.session(readonly=True) as session:  # still the same, readable database
        assert session.execute(text("SELECT count(*) FROM customers")).scalar() == 0
    db.dispose()


def test_open_keyring_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.delenv("PALMPAY_KEYRING", raising=False)
    settings = Settings(data_dir=tmp_path, dev_mode=True)
    build_service(settings).db.dispose()
    (tmp_path / "keyring.json").chmod(0o644)
    with pytest.raises(KeyringError, match="group or others"):
        build_service(settings)
