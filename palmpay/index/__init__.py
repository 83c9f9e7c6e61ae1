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

The default factory is exact ``Flat``: measured (``scripts/index_choice.py``,
docs/index_choice.md) against the approximate structures, see there for the numbers behind
it.
"""

from palmpay.index.core import DEFAULT_FACTORY, PalmIndex
from palmpay.index.types import IndexMemory, Match, UnknownIdentityError

__all__ = ["DEFAULT_FACTORY", "IndexMemory", "Match", "PalmIndex", "UnknownIdentityError"]
