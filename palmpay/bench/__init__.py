"""``palmpay bench``: the benchmarks behind docs/benchmarks.md (``make bench``).

One module per concern, each documenting how its numbers are made:

- :mod:`~palmpay.bench.run`: options, the plan of sizes and counts, the order of the sections;
- :mod:`~palmpay.bench.gallery`: the real dev palms, embedded once and cached;
- :mod:`~palmpay.bench.distractors`, :mod:`~palmpay.bench.galleryfile`: synthetic distractors
  (rendered through the real embedder, and a fitted model for the bulk) and the on-disk gallery;
- :mod:`~palmpay.bench.realism`: how the synthetic distractors compare with real impostors;
- :mod:`~palmpay.bench.search`: 1:N search per structure and size, in a process each;
- :mod:`~palmpay.bench.durable`: enrollment into the full index, loading and rebuilding it;
- :mod:`~palmpay.bench.http`: ``palmpay serve`` under load from an asyncio + httpx client;
- :mod:`~palmpay.bench.cpu`: where the CPU milliseconds of a payment go;
- :mod:`~palmpay.bench.results`, :mod:`~palmpay.bench.targets`, :mod:`~palmpay.bench.report`,
  :mod:`~palmpay.bench.plots`, :mod:`~palmpay.bench.harness`: rows, targets, Markdown, figures,
  timing and machine facts.

Nothing is imported until :func:`main` runs (the CLI registers the command without loading it).
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``palmpay bench`` with ``argv`` (see :func:`palmpay.bench.run.main`)."""
    from palmpay.bench.run import main as run_main

    return run_main(argv)
