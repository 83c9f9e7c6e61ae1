"""Per-stage CPU time of the pay path: where the milliseconds of a request go.

Code that does one stage's work wraps it in ``with stage("detection"):``. The CPU time the
calling thread spends inside the block (:func:`time.thread_time`, so that concurrent requests
in other threads do not count) is added to

- every :func:`measure` block open in that thread: one request's :class:`StageSplit`, and
- the process-wide totals (:func:`totals`, zeroed by :func:`reset_totals`), for a benchmark
  or a metrics exporter to read.

A stage opened inside another counts once: the outer stage gets only its own time. The pay
path's stages are :data:`STAGES`; any other name is accepted too. ::

    with measure() as meter:
        templates, live = palms.probe_live(frames)
        palms.match(templates)
    meter.split.cpu_ms["landmarks"], meter.split.calls["detection"], meter.split.other_ms

The overhead is two clock reads per stage (about a microsecond). Work that a library hands to
threads of its own (OpenCV's parallel loops with ``cv2.setNumThreads`` above 1, onnxruntime
with ``intra_op_threads`` above 1) is not seen by the calling thread's clock: compare
:attr:`StageSplit.total_ms` with the process's CPU time when those are on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType

__all__ = ["STAGES", "StageMeter", "StageSplit", "measure", "reset_totals", "stage", "totals"]

#: The pay path's stages, in the order a request runs them.
STAGES = ("decode", "detection", "landmarks", "roi", "quality", "embed", "search", "liveness")


@dataclass(frozen=True)
class StageSplit:
    """CPU milliseconds and calls per stage; ``total_ms`` is the thread's whole CPU time in the
    :func:`measure` block (for :func:`totals`: the sum of the stages)."""

    cpu_ms: Mapping[str, float] = field(default_factory=dict)
    calls: Mapping[str, int] = field(default_factory=dict)
    total_ms: float = 0.0

    @property
    def staged_ms(self) -> float:
        """CPU milliseconds inside some stage."""
        return sum(self.cpu_ms.values())

    @property
    def other_ms(self) -> float:
        """CPU milliseconds of the block outside every stage (Python glue, database, ...)."""
        return max(0.0, self.total_ms - self.staged_ms)

    def as_dict(self) -> dict[str, float]:
        """``{stage: ms}`` for :data:`STAGES` (0 where a stage did not run), other stages,
        then ``other`` and ``total``."""
        out = {name: self.cpu_ms.get(name, 0.0) for name in STAGES}
        out.update({k: v for k, v in self.cpu_ms.items() if k not in out})
        return out | {"other": self.other_ms, "total": self.total_ms}


class StageMeter:
    """The accumulating side of one :func:`measure` block; :attr:`split` is set when it ends."""

    def __init__(self) -> None:
        self.cpu_s: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.split = StageSplit()

    def add(self, name: str, seconds: float) -> None:
        self.cpu_s[name] = self.cpu_s.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def freeze(self, total_s: float) -> StageSplit:
        return StageSplit(MappingProxyType({k: 1000 * v for k, v in self.cpu_s.items()}),
                          MappingProxyType(dict(self.calls)), 1000 * total_s)


class _Local(threading.local):
    def __init__(self) -> None:
        self.meters: list[StageMeter] = []
        self.inner: list[float] = [0.0]  # per open stage: CPU seconds of its nested stages


_local = _Local()
_totals = StageMeter()
_totals_lock = threading.Lock()


class stage:  # noqa: N801  (used like a function: ``with stage("embed"):``)
    """Context manager adding the block's thread CPU time to stage ``name`` (see the module
    docstring). Not re-entrant on one instance: make one per block."""

    __slots__ = ("name", "_start")

    def __init__(self, name: str) -> None:
        self.name = name
        self._start = 0.0

    def __enter__(self) -> None:
        _local.inner.append(0.0)
        self._start = time.thread_time()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        spent = time.thread_time() - self._start
        nested = _local.inner.pop()
        _local.inner[-1] += spent
        own = max(0.0, spent - nested)
        for meter in _local.meters:
            meter.add(self.name, own)
        with _totals_lock:
            _totals.add(self.name, own)


@contextmanager
def measure() -> Iterator[StageMeter]:
    """Collect this thread's stages until the block ends; the meter's ``split`` then holds
    them (blocks may nest: each sees the stages run inside it)."""
    meter = StageMeter()
    _local.meters.append(meter)
    start = time.thread_time()
    try:
        yield meter
    finally:
        _local.meters.remove(meter)
        meter.split = meter.freeze(time.thread_time() - start)


def totals() -> StageSplit:
    """Every stage's CPU time and calls in this process since start or :func:`reset_totals`."""
    with _totals_lock:
        return _totals.freeze(sum(_totals.cpu_s.values()))


def reset_totals() -> None:
    """Zero the process-wide totals."""
    with _totals_lock:
        _totals.cpu_s.clear()
        _totals.calls.clear()
