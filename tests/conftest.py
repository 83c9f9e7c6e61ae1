"""Shared fixtures: where the real datasets live (tests using them skip when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of a real dataset under ../shared/data, or skip the test with a clear message."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (../shared/data is only on dev machines/CI)")
    return path
