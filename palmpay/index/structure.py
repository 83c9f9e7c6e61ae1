"""Structure: what :class:`~palmpay.index.PalmIndex` needs of a FAISS index built from a factory
string, whatever the string: training, search parameters, compaction, memory-mapped reading,
and its size.

Every FAISS index here is filled with plain ``add`` (never ``add_with_ids``), so a FAISS result
is the position of the sample in insertion order, which is its row in the index's own arrays.
:func:`compact` keeps that true when rows are dropped: flat codes (``Flat``, ``SQ8``, ``PQ``,
fast-scan ``PQ…x4fs``) renumber by themselves, an IVF index has its stored ids renumbered in
place, a pre-transform or a refine drops from what it wraps, and anything else (HNSW) is rebuilt
from its reconstructed vectors.

A FAISS index read memory-mapped (:func:`read`) must not be written: adding to it aborts the
process inside FAISS. :func:`owned` returns an in-memory copy to write to instead (the index's
copy-on-grow).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

__all__ = [
    "build",
    "train",
    "compact",
    "faiss_nbytes",
    "min_train_points",
    "normalise_factory",
    "owned",
    "read",
    "set_search_parameters",
]

log = logging.getLogger(__name__)


def normalise_factory(factory: str) -> str:
    """``factory`` without an ``IDMap``/``IDMap2`` prefix (rows are FAISS positions here, so
    the first index's ``"IDMap2,Flat"`` is ``"Flat"``)."""
    parts = [p.strip() for p in factory.split(",")]
    while parts and parts[0] in ("IDMap", "IDMap2"):
        parts = parts[1:]
    if not parts or not all(parts):
        raise ValueError(f"bad FAISS factory string {factory!r}")
    return ",".join(parts)


def build(dim: int, factory: str) -> faiss.Index:
    """An empty FAISS index for unit vectors compared by inner product (cosine)."""
    return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)


def _layers(index: Any) -> Iterator[Any]:
    """``index`` and every index inside it (pre-transform, refine, ID map wrappers)."""
    stack = [index]
    while stack:
        layer = faiss.downcast_index(stack.pop())
        yield layer
        for attr in ("index", "base_index", "refine_index", "storage"):
            inner = getattr(layer, attr, None)
            if isinstance(inner, faiss.Index):
                stack.append(inner)


def min_train_points(index: faiss.Index) -> int:
    """Fewest training vectors FAISS accepts for ``index``: the IVF list count and the PQ
    codebook size (0 when it needs no training)."""
    if index.is_trained:
        return 0
    need = 1
    for layer in _layers(index):
        if isinstance(layer, faiss.IndexIVF):
            need = max(need, int(layer.nlist))
        pq = getattr(layer, "pq", None)
        if isinstance(pq, faiss.ProductQuantizer):
            need = max(need, 1 << int(pq.nbits))
    return need


def train(index: faiss.Index, vectors: np.ndarray) -> None:
    """Train ``index`` on ``vectors``, its PCA layers uncentred.

    A FAISS ``PCAMatrix`` subtracts the training mean from database and query vectors alike,
    which changes inner-product rankings: ``(q − m)·(x − m)`` is ``q·x`` less ``m·x``, a term
    that differs from sample to sample (palm vectors share a large mean: norm ≈ 0.35). Trained
    on ``vectors`` and their negatives, its mean is 0 and its axes are those of the second
    moment, so the projection keeps inner products as well as any of its rank can (measured:
    docs/index_choice.md). Only a PCA that sees the raw vectors (first in a pre-transform
    reached through refines) is trained this way; the rest of the structure trains on
    ``vectors`` as FAISS does."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    _train_pca_uncentred(index, vectors)
    index.train(vectors)


def _train_pca_uncentred(index: Any, vectors: np.ndarray) -> None:
    layer: Any = faiss.downcast_index(index)
    chain: Any = getattr(layer, "chain", None)  # a SWIG vector (the stubs say list)
    if isinstance(layer, faiss.IndexPreTransform) and chain.size():
        first: Any = faiss.downcast_VectorTransform(chain.at(0))
        if isinstance(first, faiss.PCAMatrix) and not first.is_trained:
            first.train(np.concatenate([vectors, -vectors]))
    elif isinstance(layer, faiss.IndexRefine):
        _train_pca_uncentred(layer.base_index, vectors)
        _train_pca_uncentred(layer.refine_index, vectors)
    elif isinstance(layer, faiss.IndexIDMap):
        _train_pca_uncentred(layer.index, vectors)


def set_search_parameters(index: faiss.Index, nprobe: int | None, ef_search: int | None,
                          k_factor: int | None = None) -> None:
    """Set IVF ``nprobe``, HNSW ``efSearch`` and a refine's ``k_factor`` (candidates fetched
    from the base index per result) on whichever layers have them."""
    for layer in _layers(index):
        if nprobe is not None and isinstance(layer, faiss.IndexIVF):
            layer.nprobe = min(int(nprobe), int(layer.nlist))
        if ef_search is not None and isinstance(layer, faiss.IndexHNSW):
            layer.hnsw.efSearch = int(ef_search)
        if k_factor is not None and isinstance(layer, faiss.IndexRefine):
            layer.k_factor = float(k_factor)


def read(path: Path, mmap: bool) -> tuple[faiss.Index, bool]:
    """Read a FAISS index; with ``mmap``, memory-map its large arrays (``IO_FLAG_MMAP_IFC``:
    flat codes, IVF list codes and ids, HNSW storage). Returns the index and whether it is
    mapped (then see :func:`owned`)."""
    if not mmap:
        return faiss.read_index(str(path)), False
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC), True


def owned(index: faiss.Index) -> faiss.Index:
    """An in-memory copy of ``index`` that can be written to (a mapped index cannot)."""
    return faiss.deserialize_index(faiss.serialize_index(index))


def _droppable(index: Any) -> bool:
    """Whether :func:`_drop` can remove positions from ``index`` in place."""
    layer: Any = faiss.downcast_index(index)
    if isinstance(layer, faiss.IndexFlatCodes | faiss.IndexFastScan | faiss.IndexIVF):
        return True
    if isinstance(layer, faiss.IndexPreTransform):
        return _droppable(layer.index)
    if isinstance(layer, faiss.IndexRefine):
        return _droppable(layer.base_index) and _droppable(layer.refine_index)
    return False


def _drop(index: Any, live: np.ndarray, dead: np.ndarray) -> None:
    """Drop positions ``dead`` from ``index`` (:func:`_droppable`) in place, renumbering the
    others in order."""
    layer: Any = faiss.downcast_index(index)
    selector = faiss.IDSelectorBatch(len(dead), faiss.swig_ptr(dead))
    if isinstance(layer, faiss.IndexFlatCodes | faiss.IndexFastScan):
        layer.remove_ids(selector)  # positions are ids: removal renumbers
    elif isinstance(layer, faiss.IndexIVF):
        layer.remove_ids(selector)  # keeps the stored ids: renumber them in place
        new_position = np.cumsum(live, dtype=np.int64) - 1
        lists: Any = layer.invlists
        for list_no in range(layer.nlist):
            size = lists.list_size(list_no)
            if size:
                ids = faiss.rev_swig_ptr(lists.get_ids(list_no), size)
                ids[:] = new_position[ids]
        if int(layer.direct_map.type) != 0:  # 0: no direct map
            layer.make_direct_map(True)
    elif isinstance(layer, faiss.IndexPreTransform):
        _drop(layer.index, live, dead)
    else:  # IndexRefine
        _drop(layer.base_index, live, dead)
        _drop(layer.refine_index, live, dead)
    index.ntotal = int(live.sum())


def compact(index: faiss.Index, live: np.ndarray) -> faiss.Index:
    """Drop the positions where ``live`` (bool, one per position) is false; the others keep
    their order and are renumbered 0.. like the rows of the index's arrays. Returns the index
    (the same object, or a rebuilt one)."""
    if len(live) != index.ntotal:
        raise ValueError(f"{len(live)} rows for a FAISS index of {index.ntotal}")
    dead = np.flatnonzero(~live).astype(np.int64)
    if len(dead) == 0:
        return index
    top: Any = faiss.downcast_index(index)
    if _droppable(index):
        _drop(index, live, dead)
        return index
    # HNSW and anything else: rebuild from what it stores (exact for HNSW over flat storage;
    # lossy structures re-encode their decoded vectors).
    vectors = index.reconstruct_n(0, index.ntotal)[live]
    index.reset()
    for start in range(0, len(vectors), 65_536):
        index.add(np.ascontiguousarray(vectors[start : start + 65_536]))
    log.info("rebuilt %s FAISS index for compaction (%d rows)", type(top).__name__,
             len(vectors))
    return index


def faiss_nbytes(index: faiss.Index) -> int:
    """Bytes held by ``index``'s arrays (codes, lists, graphs, quantizers, transforms):
    an estimate from the structure, since FAISS reports none."""
    total = 0
    for layer in _layers(index):
        if isinstance(layer, faiss.IndexFlatCodes):
            total += int(layer.ntotal) * int(layer.code_size)
        elif isinstance(layer, faiss.IndexFastScan):
            fast: Any = layer
            total += int(fast.codes.size()) + int(fast.pq.centroids.size()) * 4
        elif isinstance(layer, faiss.IndexIVF):
            lists: Any = layer.invlists
            entries = sum(int(lists.list_size(i)) for i in range(layer.nlist))
            total += entries * (int(layer.code_size) + 8)
            total += faiss_nbytes(layer.quantizer)
            pq = getattr(layer, "pq", None)
            if isinstance(pq, faiss.ProductQuantizer):
                total += int(pq.centroids.size()) * 4
                if getattr(layer, "use_precomputed_table", 0):
                    total += int(getattr(layer, "precomputed_table").size()) * 4  # noqa: B009
        elif isinstance(layer, faiss.IndexHNSW):
            graph: Any = layer.hnsw
            total += int(graph.neighbors.size()) * 4 + int(graph.levels.size()) * 4
            total += int(graph.offsets.size()) * 8
        elif isinstance(layer, faiss.IndexPreTransform):
            chain: Any = layer.chain
            for i in range(chain.size()):
                transform: Any = faiss.downcast_VectorTransform(chain.at(i))
                for attr in ("A", "b", "mean", "eigenvalues", "PCAMat"):
                    values = getattr(transform, attr, None)
                    if values is not None and hasattr(values, "size"):
                        total += int(values.size()) * 4
        elif isinstance(layer, faiss.IndexIDMap):
            total += int(layer.id_map.size()) * 8
        pq = getattr(layer, "pq", None)
        if isinstance(layer, faiss.IndexPQ) and isinstance(pq, faiss.ProductQuantizer):
            total += int(pq.centroids.size()) * 4
    return total
