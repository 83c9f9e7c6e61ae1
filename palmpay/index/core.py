"""Core: :class:`PalmIndex`, enrolled samples in contiguous arrays behind one FAISS structure.

Row ``r`` of the index is sample ``r`` in insertion order: its vector is FAISS position ``r``,
its code is row ``r`` of a :class:`~palmpay.index.store.CodeStore`, its owner (an identity
number, −1 once removed) is ``r`` of an int32 array. Identities are a list of names and a dict
name → number; each enrolled name has a small array of its rows. A removal only marks rows
dead (a tombstone: excluded from every shortlist and re-rank); once dead rows pass
``compact_share`` of all rows they are dropped from FAISS and the arrays together
(:meth:`PalmIndex.compact`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from palmpay.index import structure
from palmpay.index.store import CodeStore, Growable
from palmpay.index.types import IndexMemory, Match, UnknownIdentityError
from palmpay.index.views import CodesView, SamplesView
from palmpay.match import DEFAULT_MAX_SHIFT, code_scores

if TYPE_CHECKING:
    from pathlib import Path

    from palmpay.config import Settings

__all__ = ["DEFAULT_FACTORY", "PalmIndex"]

log = logging.getLogger(__name__)

#: The FAISS structure of a new index (the choice and its measurement: :mod:`palmpay.index`).
DEFAULT_FACTORY = "PCAR192,PQ64x4fs,Refine(PCAR192,SQ8)"
DEFAULT_NPROBE = 32
DEFAULT_EF_SEARCH = 128
DEFAULT_K_FACTOR = 16
DEFAULT_TRAIN_SIZE = 50_000
DEFAULT_COMPACT_SHARE = 0.25


class PalmIndex:
    """Enrolled palms: add/remove by identity, search top-k, save/load.

    ``dim``, ``code_bytes`` and ``max_shift`` must match the embedder (``PalmEmbedder.dim``,
    ``.code_bytes``, ``.max_shift``: the shift search range the threshold was calibrated with).
    ``factory`` is any FAISS factory string (inner product on unit vectors); a structure that
    needs training answers exactly from a flat buffer until it is trained: by :meth:`train`, or
    by itself once ``train_size`` samples are enrolled (0: only by :meth:`train`). ``nprobe``
    (IVF lists searched), ``ef_search`` (HNSW) and ``k_factor`` (a refine's candidates per
    result) trade speed for recall (settable on a built index). ``code_mask``: the
    secret mask of cancelable templates (:mod:`palmpay.payments.cancelable`): the codes added
    are ``code ⊕ code_mask``, probes stay in clear and every score is the clear one. It is
    never saved (:meth:`load` takes it again).
    """

    def __init__(
        self,
        dim: int,
        code_bytes: int,
        factory: str = DEFAULT_FACTORY,
        max_shift: int = DEFAULT_MAX_SHIFT,
        code_mask: np.ndarray | None = None,
        *,
        nprobe: int | None = DEFAULT_NPROBE,
        ef_search: int | None = DEFAULT_EF_SEARCH,
        k_factor: int | None = DEFAULT_K_FACTOR,
        train_size: int = DEFAULT_TRAIN_SIZE,
        compact_share: float = DEFAULT_COMPACT_SHARE,
    ) -> None:
        self.code_mask = code_mask
        self.dim = dim
        self.code_bytes = code_bytes
        self.factory = structure.normalise_factory(factory)
        self.max_shift = max_shift
        self._nprobe, self._ef_search, self._k_factor = nprobe, ef_search, k_factor
        self.train_size, self.compact_share = int(train_size), float(compact_share)
        target = structure.build(dim, self.factory)
        self._min_train = structure.min_train_points(target)
        self._trained = bool(target.is_trained)
        self._faiss: Any = target if self._trained else faiss.IndexFlatIP(dim)
        self._faiss_mapped = False
        self._set_search_parameters()
        self._codes_store = CodeStore(code_bytes)
        self._owner = Growable(np.int32)  # identity number of each row, -1: removed
        self._dead = 0
        self._names: list[str] = []
        self._number: dict[str, int] = {}
        self._rows_of: dict[str, np.ndarray] = {}

    @classmethod
    def from_settings(cls, settings: Settings, dim: int, code_bytes: int,
                      max_shift: int = DEFAULT_MAX_SHIFT,
                      code_mask: np.ndarray | None = None) -> PalmIndex:
        """An empty index with the structure and parameters of ``settings`` (``index_*``)."""
        return cls(dim, code_bytes, settings.index_factory, max_shift, code_mask,
                   nprobe=settings.index_nprobe, ef_search=settings.index_ef_search,
                   k_factor=settings.index_k_factor,
                   train_size=settings.index_train_size,
                   compact_share=settings.index_compact_share)

    @property
    def options(self) -> dict[str, Any]:
        """The keyword parameters to build an index like this one."""
        return {"nprobe": self.nprobe, "ef_search": self.ef_search, "k_factor": self.k_factor,
                "train_size": self.train_size, "compact_share": self.compact_share}

    # -- contents ------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of enrolled samples (not identities)."""
        return len(self._owner) - self._dead

    def sample_count(self, identity: str) -> int:
        """Enrolled samples of ``identity`` (0 when it is not enrolled)."""
        rows = self._rows_of.get(identity)
        return 0 if rows is None else len(rows)

    @property
    def identities(self) -> list[str]:
        """Enrolled identities, sorted."""
        return sorted(self._rows_of)

    @property
    def is_trained(self) -> bool:
        """Whether the FAISS structure is trained (until then searches use an exact buffer)."""
        return self._trained

    def memory(self) -> IndexMemory:
        """What the index holds, in bytes (:class:`IndexMemory`)."""
        tables = self._owner.nbytes + sys.getsizeof(self._number) + sys.getsizeof(
            self._rows_of) + sum(sys.getsizeof(n) for n in self._names) + sum(
            a.nbytes + 112 for a in self._rows_of.values())
        return IndexMemory(self._codes_store.nbytes, self._codes_store.mapped_nbytes,
                           structure.faiss_nbytes(self._faiss), self._faiss_mapped, tables)

    @property
    def nbytes(self) -> int:
        """Resident bytes of vectors (FAISS), codes and tables; memory-mapped parts, resident
        only where touched, are left out (see :meth:`memory`)."""
        return self.memory().resident

    # -- changes -------------------------------------------------------------------------------
    def add(self, identity: str, vectors: np.ndarray, codes: np.ndarray) -> None:
        """Enroll ``len(vectors)`` samples of ``identity`` (more samples make matching steadier)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, self.code_bytes)
        if len(vectors) != len(codes) or len(vectors) == 0:
            raise ValueError(f"{identity}: need matching, non-empty vectors and codes")
        self._writable().add(vectors)
        first = len(self._owner)
        number = self._number.get(identity)
        if number is None:
            number = self._number[identity] = len(self._names)
            self._names.append(identity)
        self._codes_store.append(codes)
        self._owner.extend(np.full(len(vectors), number, np.int32))
        rows = np.arange(first, first + len(vectors), dtype=np.int64)
        old = self._rows_of.get(identity)
        self._rows_of[identity] = rows if old is None else np.concatenate([old, rows])
        log.debug("enrolled %s with %d samples", identity, len(rows))
        if (not self._trained and self.train_size > 0
                and len(self) >= max(self.train_size, self._min_train)):
            try:
                self.train()
            except (RuntimeError, ValueError):  # the samples are in; search stays exact
                log.exception("automatic training of %s failed", self.factory)

    def remove(self, identity: str) -> int:
        """Remove every sample of ``identity``; returns how many were removed."""
        rows = self._rows_of.pop(identity, None)
        if rows is None:
            raise UnknownIdentityError(identity)
        self._owner.view[rows] = -1
        self._dead += len(rows)
        if self._dead > self.compact_share * len(self._owner):
            self.compact()
        return len(rows)

    def compact(self) -> None:
        """Drop removed rows from FAISS and the arrays now (renumbering rows and identities)."""
        if self._dead == 0:
            return
        start = time.perf_counter()
        owner = self._owner.view
        live = owner >= 0
        self._faiss = structure.compact(self._writable(), live)
        self._codes_store.keep(live)
        new_row = np.cumsum(live, dtype=np.int64) - 1
        names = sorted(self._rows_of, key=self._number.__getitem__)
        renumber = np.full(len(self._names) + 1, -1, np.int32)  # [-1] stays -1
        renumber[[self._number[n] for n in names]] = np.arange(len(names), dtype=np.int32)
        self._owner.keep(live)
        self._owner.view[:] = renumber[self._owner.view]
        self._names, self._number = names, {n: i for i, n in enumerate(names)}
        self._rows_of = {n: new_row[rows] for n, rows in self._rows_of.items()}
        log.info("index compacted: %d removed rows dropped, %d left (%.2f s)", self._dead,
                 len(self._owner), time.perf_counter() - start)
        self._dead = 0

    def train(self, vectors: np.ndarray | None = None) -> None:
        """Train the FAISS structure on ``vectors`` (default: the samples enrolled so far) and
        move the enrolled samples into it. A structure that needs no training is left as is."""
        if self._trained:
            if self._min_train == 0:
                return
            raise RuntimeError(f"FAISS index {self.factory!r} is already trained")
        self.compact()
        staged = self._writable()
        if staged.ntotal:
            enrolled = faiss.rev_swig_ptr(staged.get_xb(), staged.ntotal * self.dim)
            enrolled = np.array(enrolled, np.float32).reshape(-1, self.dim)
        else:
            enrolled = np.zeros((0, self.dim), np.float32)
        sample = enrolled if vectors is None else np.ascontiguousarray(vectors, np.float32)
        sample = sample.reshape(-1, self.dim)
        if len(sample) < max(1, self._min_train):
            raise ValueError(f"{self.factory!r} needs at least {self._min_train} training "
                             f"vectors, got {len(sample)}")
        start = time.perf_counter()
        target = structure.build(self.dim, self.factory)
        structure.train(target, sample)
        for a in range(0, len(enrolled), 65_536):
            target.add(enrolled[a : a + 65_536])
        self._faiss, self._trained = target, True
        self._set_search_parameters()
        log.info("trained %s on %d vectors, moved %d samples in (%.1f s)", self.factory,
                 len(sample), len(enrolled), time.perf_counter() - start)

    @property
    def nprobe(self) -> int | None:
        """IVF lists searched per query."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        self._nprobe = value
        self._set_search_parameters()

    @property
    def ef_search(self) -> int | None:
        """HNSW search queue size."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int | None) -> None:
        self._ef_search = value
        self._set_search_parameters()

    @property
    def k_factor(self) -> int | None:
        """A refine's base-index candidates per result."""
        return self._k_factor

    @k_factor.setter
    def k_factor(self, value: int | None) -> None:
        self._k_factor = value
        self._set_search_parameters()

    def _set_search_parameters(self) -> None:
        structure.set_search_parameters(self._faiss, self._nprobe, self._ef_search,
                                        self._k_factor)

    def _writable(self) -> Any:
        """The FAISS index, copied into memory first if it was read memory-mapped."""
        if self._faiss_mapped:
            self._faiss = structure.owned(self._faiss)
            self._set_search_parameters()
            self._faiss_mapped = False
        return self._faiss

    # -- search --------------------------------------------------------------------------------
    def shortlist(self, vector: np.ndarray, k: int = 50) -> dict[str, float]:
        """The identities of the ``k`` samples nearest to ``vector`` (FAISS, cosine), each with
        its best sample's cosine, in FAISS order (nearest first). Empty when nothing is
        enrolled. This is the only FAISS query of a probe; :meth:`rerank` scores its codes.
        Removed samples are never among them: FAISS is asked for more than ``k`` while
        removed rows remain, and again for more if too few live ones came back."""
        want = min(k, len(self))
        if want <= 0:
            return {}
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        total = int(self._faiss.ntotal)
        fetch = min(total, want if self._dead == 0 else want + min(self._dead, max(k, 16)))
        owner = self._owner.view
        while True:
            cosines, rows = self._faiss.search(query, fetch)
            found = rows[0] >= 0
            rows, cosines = rows[0][found], cosines[0][found]
            owners = owner[rows]
            alive = owners >= 0
            if alive.sum() >= want or fetch >= total or not found.all():
                break
            fetch = min(total, 2 * fetch)
        best_cosine: dict[str, float] = {}
        for cosine, number in zip(cosines[alive][:want].tolist(), owners[alive][:want].tolist(),
                                  strict=True):
            who = self._names[number]
            best_cosine[who] = max(best_cosine.get(who, -1.0), cosine)
        return best_cosine

    def rerank(self, codes: np.ndarray, identities: Sequence[str]) -> np.ndarray:
        """Code score of each probe code against each identity's best enrolled sample.

        :param codes: (P, B) uint8 probe codes (a single (B,) code is P = 1).
        :param identities: enrolled identities to score (e.g. a :meth:`shortlist`).
        :returns: (P, len(identities)) float32: for every probe and identity, the maximum of
            :func:`palmpay.match.code_scores` over that identity's samples.
        """
        probe = np.asarray(codes, dtype=np.uint8).reshape(-1, self.code_bytes)
        if not identities:
            return np.zeros((len(probe), 0), np.float32)
        parts = []
        for who in identities:
            rows = self._rows_of.get(who)
            if rows is None:
                raise UnknownIdentityError(who)
            parts.append(rows)
        starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
        gallery = self._codes_store.take(np.concatenate(parts))
        scores = code_scores(probe, gallery, max_shift=self.max_shift, mask=self.code_mask)
        return np.maximum.reduceat(scores, starts, axis=1)

    def search(self, vector: np.ndarray, code: np.ndarray, k: int = 50) -> list[Match]:
        """Rank enrolled identities for one probe, best first: :meth:`shortlist` then
        :meth:`rerank`.

        ``k`` is the FAISS shortlist size in samples: larger is slower but less likely to miss the
        right palm when the compact vector is noisy. Every sample of a shortlisted identity is then
        re-scored with the shift-tolerant code matcher.
        """
        cosines = self.shortlist(vector, k)
        if not cosines:
            return []
        scores = dict(zip(cosines, self.rerank(code, list(cosines))[0].tolist(), strict=True))
        ranked = sorted(scores, key=lambda who: scores[who], reverse=True)
        return [Match(who, scores[who], cosines[who]) for who in ranked]

    # -- files ---------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write the FAISS index, its factory string and parameters, the identities, the row
        owners and the codes (:mod:`palmpay.index.files`)."""
        from palmpay.index import files

        files.save(self, folder)

    @classmethod
    def load(cls, folder: str | Path, code_mask: np.ndarray | None = None,
             mmap: bool = True) -> PalmIndex:
        """Read an index written by :meth:`save` (with the ``code_mask`` it was built with).
        With ``mmap`` the codes and what FAISS allows are memory-mapped; the index still takes
        adds and removes (a mapped FAISS index is copied into memory at the first change)."""
        from palmpay.index import files

        return files.load(cls, folder, code_mask, mmap)

    # -- views for tests written against the first index ---------------------------------------
    @property
    def _samples_of(self) -> Mapping[str, list[int]]:
        """identity → its rows (what the first index called sample ids)."""
        return SamplesView(self._rows_of)

    @property
    def _codes(self) -> Mapping[int, np.ndarray]:
        """row → code, live rows only."""
        return CodesView(self._owner.view, self._codes_store)
