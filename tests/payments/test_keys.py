"""Keyring: loading order, dev mode, rotation file handling, no key material in messages."""

from __future__ import annotations

import base64
import json
import logging
import stat
from pathlib import Path

import pytest

from palmpay.config import Settings
from palmpay.payments.keys import (
    Keyring,
    KeyringError,
    UnknownKekError,
    generate_keyring,
    load_keyring,
    read_keyring_file,
    remove_kek,
    rotate,
    write_keyring_file,
)


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings(data_dir=tmp_path / "data", **kw)


def test_no_keyring_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    for var in ("PALMPAY_KEYRING", "PALMPAY_KEYRING_FILE", "PALMPAY_DEV_MODE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(KeyringError) as exc:
        load_keyring(_settings(tmp_path))
    assert "PALMPAY_KEYRING_FILE" in str(exc.value) and "PALMPAY_KEYRING" in str(exc.value)
    with pytest.raises(KeyringError, match="does not exist"):
        load_keyring(_settings(tmp_path, keyring_file=tmp_path / "missing.json"))


def test_dev_mode_creates_0600_keyring_with_warning(tmp_path: Path, caplog) -> None:
    settings = _settings(tmp_path, dev_mode=True)
    with caplog.at_level(logging.WARNING, logger="palmpay.payments.keys"):
        first = load_keyring(settings)
    path = tmp_path / "data" / "keyring.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("DEV MODE" in r.getMessage() for r in caplog.records)
    assert load_keyring(settings).keks == first.keks  # reused, not regenerated


def test_env_variables_and_inline_keyring(tmp_path: Path, monkeypatch) -> None:
    keyring = generate_keyring()
    path = tmp_path / "k.json"
    write_keyring_file(path, keyring)
    monkeypatch.setenv("PALMPAY_KEYRING_FILE", str(path))
    assert load_keyring(Settings()).keks == keyring.keks
    monkeypatch.delenv("PALMPAY_KEYRING_FILE")
    monkeypatch.setenv("PALMPAY_KEYRING", keyring.to_json())
    settings = Settings()
    assert load_keyring(settings).active_kek_id == keyring.active_kek_id
    assert keyring.to_json() not in repr(settings)  # SecretStr


def test_repr_and_errors_hide_key_material(tmp_path: Path) -> None:
    keyring = generate_keyring()
    secrets_b64 = [base64.b64encode(k).decode() for k in keyring.keks.values()]
    secrets_b64.append(base64.b64encode(keyring.fingerprint_key).decode())
    assert not any(s in repr(keyring) for s in secrets_b64)
    doc = json.loads(keyring.to_json())
    doc["keks"][0]["key"] = doc["keks"][0]["key"][:-4]  # truncated: invalid
    with pytest.raises(KeyringError) as exc:
        Keyring.from_json(json.dumps(doc))
    assert not any(s[:16] in str(exc.value) for s in secrets_b64)
    with pytest.raises(KeyringError, match="not valid JSON"):
        Keyring.from_json("{" + keyring.to_json())


def test_rotate_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    original = generate_keyring()
    write_keyring_file(path, original)
    new_id = rotate(path)
    rotated = read_keyring_file(path)
    assert rotated.active_kek_id == new_id != original.active_kek_id
    assert rotated.keks[original.active_kek_id] == original.active_kek  # old kept
    assert rotated.fingerprint_key == original.fingerprint_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(KeyringError, match="active"):
        remove_kek(path, new_id)
    remove_kek(path, original.active_kek_id)
    assert list(read_keyring_file(path).keks) == [new_id]
    with pytest.raises(UnknownKekError):
        read_keyring_file(path).kek(original.active_kek_id)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660])
def test_keyring_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    """A keyring file that group or others may read or write stops the start-up with a clear
    error (it used to only warn), whether it is named by PALMPAY_KEYRING_FILE or the dev one."""
    path = tmp_path / "k.json"
    write_keyring_file(path, generate_keyring())
    path.chmod(mode)
    with pytest.raises(KeyringError, match=r"group or others .*chmod 600"):
        read_keyring_file(path)
    with pytest.raises(KeyringError, match="chmod 600"):
        load_keyring(_settings(tmp_path, keyring_file=path))
    dev_path = tmp_path / "data" / "keyring.json"
    load_keyring(_settings(tmp_path, dev_mode=True))  # created 0600 in a 0700 folder
    assert stat.S_IMODE(dev_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(dev_path.parent.stat().st_mode) == 0o700
    dev_path.chmod(mode)
    with pytest.raises(KeyringError, match="chmod 600"):
        load_keyring(_settings(tmp_path, dev_mode=True))
    path.chmod(0o400)  # read-only for the owner is fine
    assert read_keyring_file(path).active_kek_id
