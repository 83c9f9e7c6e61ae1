"""Key rotation on both backends: re-wrap every card and template under a new KEK, no record
lost, old KEK removable afterwards; batches, restartability, retire refusal."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from palmpay.config import Settings
from palmpay.db import Database
from palmpay.payments import admin
from palmpay.payments.keys import KeyringError, read_keyring_file, remove_kek, rotate
from palmpay.payments.models import Card, PalmTemplate
from palmpay.payments.processor import SimulatedAcquirer
from palmpay.payments.service import PaymentService
from palmpay.payments.vault import CardVault, VaultError, rewrap_all
from tests.payments.conftest import AMEX, DISCOVER, MASTERCARD, VISA


def _everything_opens(db: Database, vault: CardVault) -> tuple[set[str], int]:
    """Every active card and template opens; returns (kek ids in use, records)."""
    keks: set[str] = set()
    n = 0
    with db.session(readonly=True) as s:
        for row in s.scalars(select(Card).where(Card.status == "active")):
            with vault.reveal(row) as pan:
                assert pan in (VISA, MASTERCARD, AMEX, DISCOVER)
            keks.add(row.kek_id)
            n += 1
        for row in s.scalars(select(PalmTemplate)):
            vector, code = vault.open_template(row)
            assert vector.shape == (1176,) and code.shape == (768,)
            keks.add(row.kek_id)
            n += 1
    return keks, n


def test_rotate_rewrap_then_drop_old_kek(db, keyring_path, vault, enroll, service) -> None:
    customers = [enroll(number, n_templates=3) for number in (VISA, MASTERCARD, AMEX)]
    service.delete_customer(customers[2].id)  # revoked card: nothing to re-wrap
    before = {who: t.vector.copy() for who, t in service.templates()}
    old = vault.active_kek_id

    new = rotate(keyring_path)
    keyring = read_keyring_file(keyring_path)
    # mid-rotation: rows under the old KEK still open with the new keyring
    assert _everything_opens(db, CardVault(keyring))[0] == {old}
    with db.sessionmaker() as session:
        assert rewrap_all(session, keyring, batch_size=2) == 2 + 6
        assert rewrap_all(session, keyring, batch_size=2) == 0  # idempotent

    remove_kek(keyring_path, old)
    only_new = CardVault(read_keyring_file(keyring_path))
    assert _everything_opens(db, only_new) == ({new}, 8)
    svc = PaymentService(db, only_new, SimulatedAcquirer())
    after = {who: t.vector for who, t in svc.templates()}
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert svc.authorize(customers[0].id, 100, "eur").status == "succeeded"


def test_rewrap_is_restartable_after_a_failure(db, keyring_path, vault, enroll,
                                               monkeypatch) -> None:
    for number in (VISA, MASTERCARD, AMEX, DISCOVER):
        enroll(number, n_templates=1)
    old = vault.active_kek_id
    rotate(keyring_path)
    keyring = read_keyring_file(keyring_path)

    real = CardVault._rewrap_row
    calls = {"n": 0}

    def flaky(self, row, aad, kr):
        calls["n"] += 1
        if calls["n"] == 4:
            raise VaultError("simulated crash")
        return real(self, row, aad, kr)

    monkeypatch.setattr(CardVault, "_rewrap_row", flaky)
    with db.sessionmaker() as session, pytest.raises(VaultError):
        rewrap_all(session, keyring, batch_size=2)
    # first batch (2 cards) committed, second rolled back; all records still open
    keks, n = _everything_opens(db, CardVault(keyring))
    assert keks == {old, keyring.active_kek_id} and n == 8
    with db.session(readonly=True) as s:
        moved = s.scalars(select(Card).where(Card.kek_id == keyring.active_kek_id)).all()
    assert len(moved) == 2

    monkeypatch.setattr(CardVault, "_rewrap_row", real)
    with db.sessionmaker() as session:
        assert rewrap_all(session, keyring, batch_size=2) == 6
    assert _everything_opens(db, CardVault(keyring))[0] == {keyring.active_kek_id}


def test_rewrap_refuses_a_record_that_does_not_open(db, keyring_path, vault, enroll) -> None:
    enroll(VISA, n_templates=1)
    with db.session() as s:
        row = s.scalars(select(PalmTemplate)).one()
        row.ciphertext = row.ciphertext[:-1] + bytes([row.ciphertext[-1] ^ 1])
    rotate(keyring_path)
    keyring = read_keyring_file(keyring_path)
    with db.sessionmaker() as session, pytest.raises(VaultError):
        rewrap_all(session, keyring)
    with db.session(readonly=True) as s:  # the tampered row was not re-wrapped
        assert s.scalars(select(PalmTemplate)).one().kek_id == vault.active_kek_id


def test_admin_rotate_and_retire(db_url, keyring_path, vault, enroll, service) -> None:
    ann = enroll(VISA, n_templates=2)
    old = vault.active_kek_id
    settings = Settings(database_url=db_url, keyring_file=keyring_path)
    new_id, count = admin.rotate_keys(settings)
    assert count == 3 and admin.kek_usage(settings) == {new_id: 3}
    admin.retire_key(settings, old)
    assert list(read_keyring_file(keyring_path).keks) == [new_id]
    with pytest.raises(KeyringError, match="active"):
        admin.retire_key(settings, new_id)
    # a server started before the rotation still charges: it reloads the keyring file when it
    # meets the new KEK id
    assert service.vault.active_kek_id == old
    assert service.authorize(ann.id, 100, "eur").status == "succeeded"
    assert service.vault.active_kek_id == new_id


def test_retire_refused_while_in_use(db_url, keyring_path, vault, enroll) -> None:
    enroll(VISA, n_templates=1)
    old = vault.active_kek_id
    settings = Settings(database_url=db_url, keyring_file=keyring_path)
    rotate(keyring_path)  # no re-wrap yet
    with pytest.raises(KeyringError, match="still wraps 2 records"):
        admin.retire_key(settings, old)
    assert admin.rewrap(settings) == 2
    admin.retire_key(settings, old)


def test_inline_keyring_cannot_be_rotated(tmp_path, keyring_path) -> None:
    settings = Settings(data_dir=tmp_path, keyring=keyring_path.read_text())
    with pytest.raises(KeyringError, match="PALMPAY_KEYRING"):
        admin.rotate_keys(settings)

