"""The benchmark harness: timing loop, thread settings, machine facts, command line, output.

Both benchmark scripts time with :func:`measure` (wall-clock and process-CPU ms per call, after
warm-up calls, summarised by :class:`Timing`), describe where they ran with
:func:`machine_facts` and :class:`Run` (the command line, the date, the load average at the start
and end of the run) and hand the finished Markdown to :func:`write_report`.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import faiss
import numpy as np
import onnxruntime

__all__ = ["REPO", "CallCounter", "Run", "Timing", "blas_threads", "command_line", "load_average",
           "machine_facts", "measure", "set_threads", "utc_now", "write_report"]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Timing:
    """Per-call wall and process-CPU times in ms."""

    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def p90(self) -> float:
        return float(np.percentile(self.wall, 90))

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def measure(func: Callable[[Any], object], items: Sequence[Any] | np.ndarray, runs: int,
            warmup: int = 3, check: Callable[[Any], None] | None = None) -> Timing:
    """Time ``func(item)`` ``runs`` times, cycling through ``items``, after ``warmup`` calls.

    ``check``, when given, is called on every timed call's result outside the timed span (to
    fail loudly on a wrong answer rather than time it).
    """
    for i in range(warmup):
        func(items[i % len(items)])
    wall, cpu = [], []
    for i in range(runs):
        item = items[i % len(items)]
        w0, c0 = time.perf_counter(), time.process_time()
        result = func(item)
        wall.append(1000 * (time.perf_counter() - w0))
        cpu.append(1000 * (time.process_time() - c0))
        if check is not None:
            check(result)
    return Timing(wall, cpu)


class CallCounter:
    """Wraps a callable and counts its calls (to see how often ``track`` ran the detector)."""

    def __init__(self, func: Callable[..., object]) -> None:
        self.func = func
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self.func(*args, **kwargs)


def set_threads(threads: int) -> None:
    """OpenCV and FAISS (OpenMP) threads; onnxruntime's come from ``Settings.intra_op_threads``.

    numpy's BLAS threads are left as the environment sets them (see :func:`blas_threads`).
    """
    cv2.setNumThreads(threads)
    faiss.omp_set_num_threads(threads)


def blas_threads() -> str:
    """numpy's BLAS thread setting as the environment gives it (``None``: the library default)."""
    return f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_average() -> float:
    """The 1-minute load average (above 0: other work shares the cores)."""
    return os.getloadavg()[0]


def command_line(script: str | Path, argv: Sequence[str] | None = None) -> str:
    """The command as typed from the repository root (interpreter path relative if inside)."""

    def shown(path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    rest = sys.argv[1:] if argv is None else list(argv)
    return shlex.join([shown(Path(sys.executable)), shown(Path(script).resolve()), *rest])


@dataclass(frozen=True)
class Run:
    """One benchmark run: the command that started it, when, and the load at its start."""

    command: str
    started: float = field(default_factory=time.perf_counter)
    load_at_start: float = field(default_factory=load_average)

    @classmethod
    def start(cls, script: str | Path, argv: Sequence[str] | None = None) -> Run:
        return cls(command_line(script, argv))

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.started


def _first_field(path: str, key: str) -> str | None:
    """The value after ``key`` on the first line of ``path`` (``/proc`` style) that starts so."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return None


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + (" + uncommitted changes" if dirty else "")) or "unknown"


def machine_facts() -> list[tuple[str, str]]:
    """(name, value) rows: CPU, cores, memory, OS, library versions, threads, commit, date."""
    cpu = platform.processor() or "unknown"
    mem = "unknown"
    try:
        cpu = _first_field("/proc/cpuinfo", "model name") or cpu
        total = _first_field("/proc/meminfo", "MemTotal")
        if total:
            mem = f"{int(total.split()[0]) / 1024 ** 2:.1f} GiB"
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        ("memory", mem),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("onnxruntime", onnxruntime.__version__),
        ("faiss", faiss.__version__),
        ("numpy", np.__version__),
        ("OpenCV", cv2.__version__),
        ("numpy BLAS threads", blas_threads()),
        ("palmpay commit", _git_commit()),
        ("date", utc_now()),
    ]


def write_report(report: str, out: Path) -> None:
    """Write the Markdown report to ``out`` (creating its folder) and print it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
