"""Dataset folders: ``<root>/<palm-id>/<sample>.<ext>``, one folder per palm.

Sample files named ``s1_*`` / ``s2_*`` belong to acquisition sessions 1 and 2 (the standard
enroll-session-1, probe-session-2 protocol); any other name has no session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from palmpay.capture import IMAGE_SUFFIXES

__all__ = ["DatasetError", "Sample", "scan"]

_SESSION = re.compile(r"^s(\d+)_", re.IGNORECASE)


class DatasetError(ValueError):
    """The folder is not laid out as ``<palm-id>/<sample>.<ext>``."""


@dataclass(frozen=True)
class Sample:
    """One image of one palm; ``session`` is None when the file name carries none."""

    palm: str
    path: Path
    session: int | None


def scan(root: str | Path) -> list[Sample]:
    """Every image under ``root``'s palm folders, sorted by palm then file name."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            match = _SESSION.match(path.name)
            samples.append(Sample(folder.name, path, int(match.group(1)) if match else None))
    if not samples:
        raise DatasetError(f"{root}: no <palm-id>/<sample> images found")
    return samples
