"""The command line answers a refused value with its problem code and exit status 2, never a
traceback."""

from __future__ import annotations

import pytest

from palmpay.cli import main
from palmpay.config import get_settings


@pytest.fixture
def dev_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("PALMPAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PALMPAY_DEV_MODE", "true")
    monkeypatch.delenv("PALMPAY_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_refused_key_name_is_a_clear_error(dev_settings, capsys):
    assert main(["terminals", "create", "--name", "lane\x011"]) == 2
    err = capsys.readouterr().err
    assert "invalid_request" in err and "control character" in err and "Traceback" not in err


def test_a_good_key_name_prints_the_secret_once(dev_settings, capsys):
    assert main(["terminals", "create", "--name", "lane 1"]) == 0
    assert "pp_terminal_" in capsys.readouterr().out
