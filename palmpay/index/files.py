"""Files: :meth:`PalmIndex.save` / :meth:`PalmIndex.load` of a folder.

``index.json``: format, factory string, dimensions, search and training parameters, whether the
structure is trained, and the identity names (number → name); ``owners.npy``: int32 identity
number per row (−1: removed); ``codes.npy``: (N, B) uint8 codes; ``index.faiss``: the FAISS
structure (the exact buffer while untrained). Every file is written to a temporary name and
renamed, so an index memory-mapped from the folder keeps reading the files it mapped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from palmpay.index import structure
from palmpay.index.store import CodeStore, Growable, replace_atomically

if TYPE_CHECKING:
    from palmpay.index.core import PalmIndex

__all__ = ["CODES", "FAISS", "FORMAT", "META", "OWNERS", "load", "save"]

log = logging.getLogger(__name__)

FORMAT = 2
META = "index.json"
FAISS = "index.faiss"
CODES = "codes.npy"
OWNERS = "owners.npy"


def save(index: PalmIndex, folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (FAISS + ".tmp")
    faiss.write_index(index._faiss, str(tmp))
    replace_atomically(tmp, folder / FAISS)
    index._codes_store.save(folder / CODES)
    tmp = folder / (OWNERS + ".tmp.npy")
    np.save(tmp, index._owner.view)
    replace_atomically(tmp, folder / OWNERS)
    meta = {
        "format": FORMAT,
        "factory": index.factory,
        "dim": index.dim,
        "code_bytes": index.code_bytes,
        "max_shift": index.max_shift,
        "trained": index.is_trained,
        "options": index.options,
        "names": index._names,
    }
    tmp = folder / (META + ".tmp")
    tmp.write_text(json.dumps(meta))
    replace_atomically(tmp, folder / META)


def load(cls: type[PalmIndex], folder: str | Path, code_mask: np.ndarray | None,
         mmap: bool) -> PalmIndex:
    folder = Path(folder)
    meta = json.loads((folder / META).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: index format {meta.get('format')}, this palmpay reads "
                         f"{FORMAT}: rebuild the index from the database")
    index = cls(meta["dim"], meta["code_bytes"], meta["factory"], meta["max_shift"], code_mask,
                **meta["options"])
    index._faiss, index._faiss_mapped = structure.read(folder / FAISS, mmap)
    index._trained = bool(meta["trained"])
    index._set_search_parameters()
    codes = np.load(folder / CODES, mmap_mode="r" if mmap else None)
    owners = np.load(folder / OWNERS)
    if not len(codes) == len(owners) == index._faiss.ntotal:
        raise ValueError(f"{folder}: FAISS holds {index._faiss.ntotal} rows, codes "
                         f"{len(codes)}, owners {len(owners)}")
    index._codes_store = CodeStore.mapped(codes)
    index._owner = Growable(np.int32, owners)
    index._names = list(meta["names"])
    index._number = {name: i for i, name in enumerate(index._names)}
    index._dead = int(np.count_nonzero(owners < 0))
    order = np.argsort(owners, kind="stable")
    sorted_owners = owners[order]
    first_live = int(np.searchsorted(sorted_owners, 0))
    numbers, starts = np.unique(sorted_owners[first_live:], return_index=True)
    bounds = [*(starts + first_live).tolist(), len(owners)]
    index._rows_of = {index._names[n]: order[a:b].astype(np.int64)
                      for n, a, b in zip(numbers.tolist(), bounds[:-1], bounds[1:], strict=True)}
    log.info("loaded index %s: %d samples, %d identities%s", folder, len(index),
             len(index._rows_of), " (memory-mapped)" if mmap else "")
    return index
