from __future__ import annotations

import pytest

from palmpay.dataset import DatasetError, scan


def test_scan_layout_and_sessions(tmp_path):
    for palm in ("b", "a"):
        (tmp_path / palm).mkdir()
        for name in ("s1_01.png", "s2_01.png", "x.jpg", "readme.txt"):
            (tmp_path / palm / name).write_bytes(b"")
    samples = scan(tmp_path)
    assert [s.palm for s in samples] == ["a"] * 3 + ["b"] * 3
    assert [s.session for s in samples[:3]] == [1, 2, None]


def test_scan_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        scan(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no <palm-id>"):
        scan(tmp_path)
