"""Store: the index's contiguous arrays (codes by row, owner of each row), no per-sample objects.

:class:`CodeStore` holds the (N, B) uint8 codes as a list of segments: a first one that may
be a read-only memory map of ``codes.npy`` (:meth:`CodeStore.mapped`) and owned blocks of up to
:data:`BLOCK_ROWS` rows after it. Appending fills the last block and opens a new one when it is
full, so an enrollment never copies the codes already stored (a doubling array would copy all
768 MB at 1 M samples now and then), and a mapped index accepts adds without reading its map.
:class:`Growable` is a plain doubling 1-d array (the row → identity-number table: 4 bytes a row).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["BLOCK_ROWS", "CodeStore", "Growable", "replace_atomically"]

#: Rows of a full owned block of :class:`CodeStore` (48 MB of 768-byte codes); blocks before
#: grow from 1,024 rows by doubling.
BLOCK_ROWS = 65_536


class Growable:
    """A 1-d numpy array that grows by doubling; :attr:`view` is its filled part."""

    def __init__(self, dtype: type | np.dtype, data: np.ndarray | None = None) -> None:
        self._data = np.empty(16, dtype) if data is None else np.array(data, dtype)
        self._n = 0 if data is None else len(data)

    def __len__(self) -> int:
        return self._n

    @property
    def view(self) -> np.ndarray:
        """The filled part (a view: writes go to the store)."""
        return self._data[: self._n]

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        need = self._n + len(values)
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)), self._data.dtype)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : need] = values
        self._n = need

    def keep(self, live: np.ndarray) -> None:
        """Keep the rows where ``live`` (bool, one per row) is true, in order."""
        kept = self.view[live]
        self._data = np.empty(max(16, len(kept)), self._data.dtype)
        self._data[: len(kept)] = kept
        self._n = len(kept)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)


class CodeStore:
    """Packed codes by row: a list of segments (mapped or owned), appended at the end."""

    def __init__(self, code_bytes: int) -> None:
        self.code_bytes = code_bytes
        self._segments: list[np.ndarray] = []  # owned blocks may have unused rows at the end
        self._starts: list[int] = []  # first row of each segment
        self._fill = 0  # rows used in the last segment
        self._mapped = 0  # rows in a leading memory-mapped segment

    @classmethod
    def mapped(cls, codes: np.ndarray) -> CodeStore:
        """A store whose first segment is ``codes`` (e.g. ``np.load(..., mmap_mode="r")``),
        never written to: adds go to owned blocks after it."""
        store = cls(codes.shape[1])
        if len(codes):
            store._segments, store._starts, store._fill = [codes], [0], len(codes)
            store._mapped = len(codes) if isinstance(codes, np.memmap) else 0
        return store

    def __len__(self) -> int:
        return self._starts[-1] + self._fill if self._segments else 0

    @property
    def mapped_rows(self) -> int:
        """Rows read through a memory map (resident only where a search touched them)."""
        return self._mapped

    def append(self, codes: np.ndarray) -> None:
        codes = np.asarray(codes, np.uint8).reshape(-1, self.code_bytes)
        done = 0
        while done < len(codes):
            last = self._segments[-1] if self._segments else None
            if last is None or self._fill == len(last) or self._is_readonly(last):
                start = len(self)
                rows = min(BLOCK_ROWS, max(1024, start))  # geometric up to BLOCK_ROWS
                self._segments.append(np.empty((rows, self.code_bytes), np.uint8))
                self._starts.append(start)
                self._fill = 0
                last = self._segments[-1]
            n = min(len(codes) - done, len(last) - self._fill)
            last[self._fill : self._fill + n] = codes[done : done + n]
            self._fill += n
            done += n

    @staticmethod
    def _is_readonly(segment: np.ndarray) -> bool:
        return isinstance(segment, np.memmap) or not segment.flags.writeable

    def _parts(self) -> list[np.ndarray]:
        """The filled part of every segment, in row order."""
        parts = list(self._segments)
        if parts:
            parts[-1] = parts[-1][: self._fill]
        return parts

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Codes of ``rows`` (any order), (len(rows), B) uint8, a new array."""
        rows = np.asarray(rows, np.int64)
        if len(self._segments) == 1:
            return self._segments[0][rows]
        out = np.empty((len(rows), self.code_bytes), np.uint8)
        which = np.searchsorted(np.asarray(self._starts), rows, side="right") - 1
        for seg in np.unique(which).tolist():
            sel = which == seg
            out[sel] = self._segments[seg][rows[sel] - self._starts[seg]]
        return out

    def keep(self, live: np.ndarray) -> None:
        """Keep the rows where ``live`` is true, in order, in one owned segment (a compaction
        reads a mapped segment whole)."""
        kept = np.concatenate([part[live[start : start + len(part)]] for part, start in
                               zip(self._parts(), self._starts, strict=True)]
                              ) if self._segments else np.empty((0, self.code_bytes), np.uint8)
        self._segments, self._starts, self._fill, self._mapped = [], [], 0, 0
        if len(kept):
            self._segments, self._starts, self._fill = [kept], [0], len(kept)

    def save(self, path: Path) -> None:
        """Write every row as one ``.npy`` (through a temporary file and a rename, so a map of
        the previous file stays valid)."""
        tmp = path.with_name(path.name + ".tmp")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(self), self.code_bytes))
        for part, start in zip(self._parts(), self._starts, strict=True):
            out[start : start + len(part)] = part
        out.flush()
        del out
        replace_atomically(tmp, path)

    @property
    def nbytes(self) -> int:
        """Bytes of the filled rows of owned segments (the unfilled end of the last block is
        not yet resident; a mapped segment is in :attr:`mapped_nbytes`)."""
        return sum(int(p.nbytes) for p in self._parts() if not isinstance(p, np.memmap))

    @property
    def mapped_nbytes(self) -> int:
        return sum(int(p.nbytes) for p in self._parts() if isinstance(p, np.memmap))


def replace_atomically(tmp: Path, path: Path) -> None:
    """``tmp`` → ``path`` by rename (readers of the old file keep their copy)."""
    os.replace(tmp, path)
