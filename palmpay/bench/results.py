"""The frozen rows every experiment of ``palmpay bench`` returns, and their JSON form.

No measuring and no formatting here. :func:`to_json` / :func:`from_json` round-trip a
:class:`BenchResults` (``docs/benchmarks/results.json``), so the report and the plots can be
made again from a run's numbers (``palmpay bench --from-json``) without measuring again.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from palmpay.bench.harness import Timing
from palmpay.bench.realism import DistributionRow

__all__ = ["BenchResults", "CpuSplit", "EnrollRow", "HttpRow", "LoadRow", "RebuildRow",
           "SearchRow", "from_dict", "from_json", "to_json"]


@dataclass(frozen=True)
class SearchRow:
    """One index structure at one gallery size (``palmpay.bench.search``)."""

    structure: str
    samples: int
    identities: int
    composition: dict[str, int]
    train_s: float
    build_s: float
    rss_delta: int
    nbytes: int | None
    timing: Timing
    genuine_in_shortlist: float
    recall_probes: int
    top1: float | None
    error: str | None = None
    #: False: a structure that needs training was below its ``train_size`` and answered from
    #: its exact flat buffer; None: the baseline.
    trained: bool | None = None


@dataclass(frozen=True)
class EnrollRow:
    """Durable enrollments of new customers into the full index, on one database."""

    database: str
    samples: int
    commit: Timing
    index_add: Timing
    durable: Timing  # commit + index add, per customer
    duplicate_check: Timing


@dataclass(frozen=True)
class LoadRow:
    """Saving the full index and loading it back (memory-mapped where it can be)."""

    samples: int
    save_s: float
    disk_bytes: int
    load_s: float
    mmap: bool
    rss_delta: int
    first_search_ms: float
    search: Timing


@dataclass(frozen=True)
class RebuildRow:
    """Rebuilding the index from the database at start-up: ``templates()`` then ``load``."""

    database: str
    templates: int
    prepare_s: float
    decrypt_s: float
    index_s: float


@dataclass(frozen=True)
class HttpRow:
    """One load level against a real ``palmpay serve``."""

    database: str
    request: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    timing: Timing
    server_cpu_ms: float  # server process CPU per request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class CpuSplit:
    """CPU ms of one pay-by-palm request, per stage, measured in-process."""

    frames: int
    requests: int
    stages: dict[str, float]  # mean CPU ms per request
    total_ms: float
    source: str  # which instrumentation made it


@dataclass(frozen=True)
class BenchResults:
    """Everything one run measured."""

    command: str
    quick: bool
    elapsed_s: float
    load_start: float
    load_end: float
    machine: list[list[str]]
    settings: dict[str, Any]
    gallery: dict[str, Any]
    distributions: list[DistributionRow] = field(default_factory=list)
    searches: list[SearchRow] = field(default_factory=list)
    enrolls: list[EnrollRow] = field(default_factory=list)
    loads: list[LoadRow] = field(default_factory=list)
    rebuilds: list[RebuildRow] = field(default_factory=list)
    http: list[HttpRow] = field(default_factory=list)
    cpu: list[CpuSplit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def to_json(obj: Any) -> str:
    """JSON of a results dataclass (nested; floats to 4 decimals: ms to 0.1 µs)."""
    return json.dumps(_rounded(dataclasses.asdict(obj)))


def from_dict(cls: Any, data: Any) -> Any:
    """Rebuild ``cls`` (a dataclass, list/dict of them, optional, or a plain type) from the
    output of :func:`dataclasses.asdict`."""
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        inner = [a for a in typing.get_args(cls) if a is not type(None)]
        return from_dict(inner[0], data)
    if origin is list:
        (item,) = typing.get_args(cls)
        return [from_dict(item, d) for d in data]
    if origin is dict:
        _, value = typing.get_args(cls)
        return {k: from_dict(value, v) for k, v in data.items()}
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        values = {f.name: from_dict(hints[f.name], data[f.name])
                  for f in dataclasses.fields(cls) if f.name in data}
        return cls(**values)  # type: ignore[operator]
    return data


def from_json(text: str) -> BenchResults:
    """The inverse of :func:`to_json` for a :class:`BenchResults`."""
    result: BenchResults = from_dict(BenchResults, json.loads(text))
    return result
