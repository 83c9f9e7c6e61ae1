"""Types: what :class:`~palmpay.index.PalmIndex` returns and raises."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IndexMemory", "Match", "UnknownIdentityError"]


class UnknownIdentityError(KeyError):
    """The identity is not enrolled in this index."""


@dataclass(frozen=True)
class Match:
    """One ranked candidate: ``score`` is the code score (0..1), ``vector_score`` the cosine."""

    identity: str
    score: float
    vector_score: float


@dataclass(frozen=True)
class IndexMemory:
    """Bytes an index holds: ``codes`` owned, ``codes_mapped`` read through a memory map
    (resident only where touched), ``faiss`` (``faiss_mapped``: read through a map), the
    identity ``tables``. ``resident`` adds up what is surely resident."""

    codes: int
    codes_mapped: int
    faiss: int
    faiss_mapped: bool
    tables: int

    @property
    def resident(self) -> int:
        return self.codes + self.tables + (0 if self.faiss_mapped else self.faiss)
