"""Views: read-only mappings over the index's arrays, shaped like the first index's per-sample
dicts (``_samples_of``: identity → rows, ``_codes``: row → code), for code and tests written
against it. They copy nothing until read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from palmpay.index.store import CodeStore

__all__ = ["CodesView", "SamplesView"]


class SamplesView(Mapping[str, list[int]]):
    """identity → its rows."""

    def __init__(self, rows_of: dict[str, np.ndarray]) -> None:
        self._rows_of = rows_of

    def __getitem__(self, who: str) -> list[int]:
        return self._rows_of[who].tolist()

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows_of)

    def __len__(self) -> int:
        return len(self._rows_of)


class CodesView(Mapping[int, np.ndarray]):
    """row → code, live rows only (``owner`` ≥ 0)."""

    def __init__(self, owner: np.ndarray, codes: CodeStore) -> None:
        self._owner, self._codes = owner, codes

    def __getitem__(self, row: int) -> np.ndarray:
        if not 0 <= row < len(self._owner) or self._owner[row] < 0:
            raise KeyError(row)
        return self._codes.take(np.asarray([row]))[0]

    def __iter__(self) -> Iterator[int]:
        return iter(np.flatnonzero(self._owner >= 0).tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(self._owner >= 0))
