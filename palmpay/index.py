"""Index: 1:N palm search over FAISS with a shift-tolerant competitive-code re-rank.

Every enrolled sample is one row: its compact vector goes into a FAISS index (inner product on
unit vectors = cosine), its competitive code is kept beside it. A probe is searched in two
steps, each run once per probe: :meth:`PalmIndex.shortlist` asks FAISS for the identities of the
``k`` nearest samples, and :meth:`PalmIndex.rerank` scores probe codes against every sample of
given identities with :func:`palmpay.match.code_scores`, keeping each identity's best sample.
:meth:`PalmIndex.search` is the two for one probe, identities ranked by that score. The code
score (0..1, higher is more alike) is the decision score; the vector only narrows the search.

The FAISS index is described by one factory string (``"IDMap2,Flat"``: exact search, by default)
that :meth:`PalmIndex.save` writes beside the index, so :meth:`PalmIndex.load` rebuilds the same
structure. Approximate indexes lose recall on noisy probes: measure recall against ``Flat`` before
changing it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import faiss
import numpy as np

from palmpay.match import DEFAULT_MAX_SHIFT, code_scores

__all__ = ["DEFAULT_FACTORY", "Match", "PalmIndex", "UnknownIdentityError"]

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "IDMap2,Flat"
_META = "index.json"
_FAISS = "index.faiss"
_CODES = "codes.npy"


class UnknownIdentityError(KeyError):
    """The identity is not enrolled in this index."""


@dataclass(frozen=True)
class Match:
    """One ranked candidate: ``score`` is the code score (0..1), ``vector_score`` the cosine."""

    identity: str
    score: float
    vector_score: float


class PalmIndex:
    """Enrolled palms: add/remove by identity, search top-k, save/load.

    ``dim``, ``code_bytes`` and ``max_shift`` must match the embedder (``PalmEmbedder.dim``,
    ``.code_bytes``, ``.max_shift``: the shift search range the threshold was calibrated with).
    ``code_mask``: the secret mask of cancelable templates (:mod:`palmpay.payments.cancelable`):
    the codes added are ``code ⊕ code_mask``, probes stay in clear and every score is the clear
    one. It is never saved (:meth:`load` takes it again).
    """

    def __init__(
        self,
        dim: int,
        code_bytes: int,
        factory: str = DEFAULT_FACTORY,
        max_shift: int = DEFAULT_MAX_SHIFT,
        code_mask: np.ndarray | None = None,
    ) -> None:
        self.code_mask = code_mask
        self.dim = dim
        self.code_bytes = code_bytes
        self.factory = factory
        self.max_shift = max_shift
        self._faiss = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        self._next_id = 0
        self._identity_of: dict[int, str] = {}
        self._samples_of: dict[str, list[int]] = {}
        self._codes: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        """Number of enrolled samples (not identities)."""
        return len(self._identity_of)

    def sample_count(self, identity: str) -> int:
        """Enrolled samples of ``identity`` (0 when it is not enrolled)."""
        return len(self._samples_of.get(identity, ()))

    @property
    def identities(self) -> list[str]:
        """Enrolled identities, sorted."""
        return sorted(self._samples_of)

    def add(self, identity: str, vectors: np.ndarray, codes: np.ndarray) -> None:
        """Enroll ``len(vectors)`` samples of ``identity`` (more samples make matching steadier)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, self.code_bytes)
        if len(vectors) != len(codes) or len(vectors) == 0:
            raise ValueError(f"{identity}: need matching, non-empty vectors and codes")
        ids = np.arange(self._next_id, self._next_id + len(vectors), dtype=np.int64)
        self._next_id += len(vectors)
        if not self._faiss.is_trained:
            raise RuntimeError(f"FAISS index {self.factory!r} needs training before add")
        self._faiss.add_with_ids(vectors, ids)
        for row, sample_id in enumerate(ids.tolist()):
            self._identity_of[sample_id] = identity
            self._codes[sample_id] = codes[row]
        self._samples_of.setdefault(identity, []).extend(ids.tolist())
        log.debug("enrolled %s with %d samples", identity, len(ids))

    def remove(self, identity: str) -> int:
        """Remove every sample of ``identity``; returns how many were removed."""
        ids = self._samples_of.pop(identity, None)
        if not ids:
            raise UnknownIdentityError(identity)
        # faiss's stub types only the IDSelector overload; the SWIG wrapper also takes an array
        # of int64 ids (and builds the selector itself).
        self._faiss.remove_ids(np.asarray(ids, dtype=np.int64))  # type: ignore[arg-type]
        for sample_id in ids:
            del self._identity_of[sample_id]
            del self._codes[sample_id]
        return len(ids)

    def shortlist(self, vector: np.ndarray, k: int = 50) -> dict[str, float]:
        """The identities of the ``k`` samples nearest to ``vector`` (FAISS, cosine), each with
        its best sample's cosine, in FAISS order (nearest first). Empty when nothing is
        enrolled. This is the only FAISS query of a probe; :meth:`rerank` scores its codes."""
        if len(self) == 0:
            return {}
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        cosines, ids = self._faiss.search(query, min(k, len(self)))
        best_cosine: dict[str, float] = {}
        for cosine, sample_id in zip(cosines[0].tolist(), ids[0].tolist(), strict=True):
            if sample_id < 0:
                continue
            who = self._identity_of[sample_id]
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
        rows: list[int] = []
        bounds = [0]
        for who in identities:
            if who not in self._samples_of:
                raise UnknownIdentityError(who)
            rows.extend(self._samples_of[who])
            bounds.append(len(rows))
        if not rows:
            return np.zeros((len(probe), 0), np.float32)
        gallery = np.stack([self._codes[i] for i in rows])
        scores = code_scores(probe, gallery, max_shift=self.max_shift, mask=self.code_mask)
        return np.stack([scores[:, a:b].max(axis=1) for a, b in pairwise(bounds)], axis=1)

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

    def save(self, folder: str | Path) -> None:
        """Write the FAISS index, its factory string, the sample→identity map and the codes."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._faiss, str(folder / _FAISS))
        ids = sorted(self._identity_of)
        codes = np.stack([self._codes[i] for i in ids]) if ids else np.zeros(
            (0, self.code_bytes), np.uint8)
        np.save(folder / _CODES, codes)
        meta = {
            "factory": self.factory,
            "dim": self.dim,
            "code_bytes": self.code_bytes,
            "max_shift": self.max_shift,
            "next_id": self._next_id,
            "samples": [[i, self._identity_of[i]] for i in ids],
        }
        (folder / _META).write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: str | Path, code_mask: np.ndarray | None = None) -> PalmIndex:
        """Read an index written by :meth:`save` (with the ``code_mask`` it was built with)."""
        folder = Path(folder)
        meta = json.loads((folder / _META).read_text())
        index = cls(meta["dim"], meta["code_bytes"], meta["factory"], meta["max_shift"],
                    code_mask)
        index._faiss = faiss.read_index(str(folder / _FAISS))
        index._next_id = meta["next_id"]
        codes = np.load(folder / _CODES)
        for row, (sample_id, who) in enumerate(meta["samples"]):
            index._identity_of[int(sample_id)] = who
            index._samples_of.setdefault(who, []).append(int(sample_id))
            index._codes[int(sample_id)] = codes[row]
        if index._faiss.ntotal != len(index._identity_of):
            raise ValueError(f"{folder}: FAISS holds {index._faiss.ntotal} rows, map holds "
                             f"{len(index._identity_of)}")
        return index
