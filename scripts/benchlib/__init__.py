"""What ``scripts/bench.py`` and ``scripts/bench_api.py`` share, one concern a module.

- :mod:`benchlib.harness`: the timing loop, thread settings, the machine and environment facts,
  the command line that made a report, and writing the report.
- :mod:`benchlib.results`: the plain frozen rows the experiments return and the reports read.
- :mod:`benchlib.gallery`: the synthetic gallery and session-noise model of the search benchmarks.
- :mod:`benchlib.experiments`: the experiments of ``bench.py`` (per-stage latency, 1:N search,
  the end-to-end live path, exact vs approximate FAISS).
- :mod:`benchlib.report`: the Markdown of ``docs/bench.md`` and ``docs/bench_api.md``.

The scripts are run as ``python scripts/bench.py`` (so ``scripts/`` is first on ``sys.path`` and
this package imports as ``benchlib``); it is not part of the ``palmpay`` package and only uses the
package's public API.
"""
