"""The benchmark gallery on disk: real palms, rendered distractors, model distractors, in rows.

:func:`build_gallery` writes one gallery of the largest size asked for into the cache (three
``.npy`` files: float32 vectors, uint8 codes, int32 identity number per row, plus
``meta.json``); every smaller gallery is a prefix of it, so the 10 k gallery is inside the 100 k
one, which is inside the 1 M one. Row order: the real gallery (:mod:`palmpay.bench.gallery`),
then the rendered pool, then model identities (:mod:`palmpay.bench.distractors`), each identity's
rows together. :class:`GalleryFile` opens it memory-mapped, so a worker reads only the rows it
adds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from palmpay.bench.distractors import SAMPLES, VERSION, VectorModel, model_distractors
from palmpay.bench.gallery import TemplateSet

__all__ = ["GalleryFile", "build_gallery"]

log = logging.getLogger(__name__)

_CHUNK = 10_000  # model identities generated at a time


@dataclass(frozen=True)
class GalleryFile:
    """An on-disk gallery (module docstring); ``real_names[i]`` names identity number ``i``
    for the real palms, every later identity is ``d<number>``."""

    folder: Path
    size: int
    real_rows: int
    rendered_rows: int
    real_names: tuple[str, ...]

    @classmethod
    def open(cls, folder: Path) -> GalleryFile:
        meta = json.loads((folder / "meta.json").read_text())
        return cls(folder, meta["size"], meta["real_rows"], meta["rendered_rows"],
                   tuple(meta["real_names"]))

    def arrays(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first ``n`` rows: vectors, codes and identity numbers (memory-mapped)."""
        if n > self.size:
            raise ValueError(f"gallery {self.folder} has {self.size} rows, not {n}")
        return tuple(np.load(self.folder / f"{name}.npy", mmap_mode="r")[:n]
                     for name in ("vectors", "codes", "ident"))

    def name(self, number: int) -> str:
        """The identity name of identity ``number``."""
        return self.real_names[number] if number < len(self.real_names) else f"d{number:07d}"

    def composition(self, n: int) -> dict[str, int]:
        """Rows of each kind in the first ``n`` rows."""
        real = min(n, self.real_rows)
        rendered = min(n - real, self.rendered_rows)
        return {"real": real, "rendered": rendered, "model": n - real - rendered}


def build_gallery(size: int, real: TemplateSet, pool: TemplateSet, model: VectorModel,
                  cache: Path, seed: int = 0) -> GalleryFile:
    """The gallery of ``size`` rows in ``cache`` (built unless it is there already; a larger
    one of the same composition serves too)."""
    stem = f"gallery-{VERSION}-r{len(real)}-p{len(pool)}-s{seed}"
    for folder in sorted(cache.glob(stem + "-*")):
        if (folder / "meta.json").is_file():
            found = GalleryFile.open(folder)
            if found.size >= size:
                return found
    folder = cache / f"{stem}-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    dim, code_bytes = real.vectors.shape[1], real.codes.shape[1]
    vectors = np.lib.format.open_memmap(folder / "vectors.npy", "w+", np.float32, (size, dim))
    codes = np.lib.format.open_memmap(folder / "codes.npy", "w+", np.uint8, (size, code_bytes))
    ident = np.lib.format.open_memmap(folder / "ident.npy", "w+", np.int32, (size,))
    names, first = np.unique(real.palms, return_index=True)
    order = np.argsort(first)  # identity numbers in the order the real rows come
    real_names = [str(n) for n in names[order]]
    number = {n: i for i, n in enumerate(real_names)}
    rows = 0

    def put(v: np.ndarray, c: np.ndarray, who: np.ndarray) -> None:
        nonlocal rows
        take = min(len(v), size - rows)
        vectors[rows:rows + take], codes[rows:rows + take] = v[:take], c[:take]
        ident[rows:rows + take] = who[:take]
        rows += take

    grouped = np.argsort(np.asarray([number[p] for p in real.palms]), kind="stable")
    put(real.vectors[grouped], real.codes[grouped],
        np.asarray([number[p] for p in real.palms[grouped]], np.int32))
    real_rows = rows
    next_id = len(real_names)
    pool_ids = next_id + np.arange(len(pool)) // SAMPLES
    put(pool.vectors, pool.codes, pool_ids.astype(np.int32))
    rendered_rows = rows - real_rows
    next_id += len(pool) // SAMPLES
    chunk = 0
    while rows < size:
        count = min(_CHUNK, -(-(size - rows) // SAMPLES))
        v, c = model_distractors(model, pool, count, seed=seed * 100_003 + chunk)
        put(v, c, (next_id + np.arange(count * SAMPLES) // SAMPLES).astype(np.int32))
        next_id += count
        chunk += 1
        if chunk % 10 == 0:
            log.info("gallery: %d of %d rows", rows, size)
    for array in (vectors, codes, ident):
        array.flush()
    (folder / "meta.json").write_text(json.dumps({
        "size": size, "real_rows": real_rows, "rendered_rows": rendered_rows,
        "real_names": real_names}))
    return GalleryFile.open(folder)
