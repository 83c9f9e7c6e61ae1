"""Index: 1:N palm search over FAISS with a shift-tolerant competitive-code re-rank.

Every enrolled sample is one row: its compact vector goes into a FAISS index (inner product on
unit vectors = cosine), its competitive code is kept beside it in one contiguous array
(:mod:`palmpay.index.store`). A probe is searched in two steps, each run once per probe:
:meth:`PalmIndex.shortlist` asks FAISS for the identities of the ``k`` nearest samples, and
:meth:`PalmIndex.rerank` scores probe codes against every sample of given identities with
:func:`palmpay.match.code_scores` (its vectorised popcount path), keeping each identity's best
sample. :meth:`PalmIndex.search` is the two for one probe, identities ranked by that score. The
code score (0..1, higher is more alike) is the decision score; the vector only narrows the
search.

The FAISS structure is one factory string (``Settings.index_factory``), saved beside the index
so :meth:`PalmIndex.load` rebuilds the same structure: exact ``Flat``, ``IVF4096,Flat``,
``OPQ32_128,IVF4096,PQ32``, ``PCAR128,IVF4096,PQ32``, ``HNSW32`` … (:mod:`palmpay.index.structure`).
A structure that needs training answers exactly from a flat buffer until it is trained.
Removed samples are tombstones until compaction (:mod:`palmpay.index.core`). Files are
memory-mapped on load (:mod:`palmpay.index.files`).

The default structure (:data:`DEFAULT_FACTORY`, ``Settings.index_factory``) is
``PCAR192,PQ64x4fs,Refine(PCAR192,SQ8)`` with ``k_factor`` 16, chosen by measurement
(``scripts/index_choice.py``, numbers and method in docs/index_choice.md; real tongji-dev
probes against 300 real palms plus Gaussian distractors fitted to real vectors): an
(uncentred) PCA to 192 dims, a 4-bit fast-scan PQ (32 bytes) scanned over every sample, and
its 16 × k best re-scored on 8-bit codes of the same 192 dims (192 bytes). At 1 M samples it
kept the genuine palm in the k = 50 shortlist for 0.998 of exact search's hits, with search
(shortlist + re-rank) 2.9 ms p50 / 4.7 ms p99 on one thread, 237 MB of FAISS data (exact
``Flat``: 4.7 GB, 190 ms a query); with the 768 MB of codes and 61 MB of tables that is
1.07 GB when every code page is resident (7 % over the 1 GB target), ≈ 90 MB of anonymous
memory when loaded memory-mapped. The alternatives lost there: IVF (the genuine palm of
a noisy probe sits outside the probe's nearest lists: recall grows only with the share of
lists scanned), HNSW (worse still, for the same reason), PCA to 128 dims (≈ 0.99 of exact),
and a centred PCA (FAISS's own: it reorders inner products, see
:func:`palmpay.index.structure.train`). Below ``Settings.index_train_size`` samples it
searches exactly.
"""

from palmpay.index.core import DEFAULT_FACTORY, PalmIndex
from palmpay.index.types import IndexMemory, Match, UnknownIdentityError

__all__ = ["DEFAULT_FACTORY", "IndexMemory", "Match", "PalmIndex", "UnknownIdentityError"]
