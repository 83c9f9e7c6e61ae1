"""The benchmark harness: timing summaries, process CPU and memory, machine facts, the run.

Every figure of ``palmpay bench`` is a :class:`Timing` (wall-clock and process-CPU ms per call,
summarised as p50 / p99), made by :func:`measure` or built from samples taken elsewhere (the HTTP
load generator). :func:`rss_bytes` and :func:`process_cpu_s` read ``/proc`` (no psutil), so a
child process (a server, a search worker) can be measured from outside. :func:`machine_facts`
and :class:`Run` record where and when the numbers were made: CPU, cores, memory, library
versions, commit, date and the load average at the start and end of the run.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REPO", "Run", "Timing", "load_average", "machine_facts", "measure",
           "process_cpu_s", "rss_bytes", "set_threads", "utc_now"]

REPO = Path(__file__).resolve().parents[2]
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Timing:
    """Per-call wall and process-CPU times in ms (``cpu`` may be empty when not measurable)."""

    wall: list[float]
    cpu: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.wall)

    @property
    def p50(self) -> float:
        return float(np.percentile(self.wall, 50)) if self.wall else float("nan")

    @property
    def p99(self) -> float:
        return float(np.percentile(self.wall, 99)) if self.wall else float("nan")

    @property
    def mean(self) -> float:
        return float(np.mean(self.wall)) if self.wall else float("nan")

    @property
    def cpu_p50(self) -> float:
        return float(np.percentile(self.cpu, 50)) if self.cpu else float("nan")


def measure(func: Callable[[Any], object], items: Sequence[Any], runs: int, warmup: int = 3,
            budget_s: float | None = None) -> Timing:
    """Time ``func(item)`` ``runs`` times cycling through ``items`` after ``warmup`` calls;
    stops early (keeping at least 10 timed calls) once ``budget_s`` seconds have been spent."""
    for i in range(min(warmup, runs)):
        func(items[i % len(items)])
    wall, cpu = [], []
    start = time.perf_counter()
    for i in range(runs):
        item = items[i % len(items)]
        w0, c0 = time.perf_counter(), time.process_time()
        func(item)
        wall.append(1000 * (time.perf_counter() - w0))
        cpu.append(1000 * (time.process_time() - c0))
        if budget_s is not None and i >= 9 and time.perf_counter() - start > budget_s:
            break
    return Timing(wall, cpu)


def set_threads(threads: int) -> None:
    """OpenCV and FAISS (OpenMP) threads; onnxruntime's come from ``Settings.intra_op_threads``."""
    import cv2
    import faiss

    cv2.setNumThreads(threads)
    faiss.omp_set_num_threads(threads)


def _status_kib(pid: int | str, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (anonymous + file-backed pages, ``VmRSS``)."""
    return 1024 * _status_kib(pid, "VmRSS")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        kids += [int(p) for p in task.read_text().split()]
    return kids


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and of its live child processes (``--workers``)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_average() -> float:
    """The 1-minute load average (above 0: other work shares the cores)."""
    return os.getloadavg()[0]


def _first_field(path: str, key: str) -> str | None:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return None


def git_commit() -> str:
    """The short commit of the working tree, and whether it has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + (" + uncommitted changes" if dirty.strip() else "")) or "unknown"


def machine_facts() -> list[tuple[str, str]]:
    """(name, value) rows: CPU, cores, memory, OS, library versions, commit, date."""
    import cv2
    import faiss
    import onnxruntime

    cpu, mem = platform.processor() or "unknown", "unknown"
    try:
        cpu = _first_field("/proc/cpuinfo", "model name") or cpu
        total = _first_field("/proc/meminfo", "MemTotal")
        if total:
            mem = f"{int(total.split()[0]) / 1024 ** 2:.1f} GiB"
    except OSError:
        pass
    return [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable"),
        ("memory", mem),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("numpy", np.__version__),
        ("faiss", f"{faiss.__version__} ({faiss.get_compile_options().strip() or 'generic'})"),
        ("onnxruntime", onnxruntime.__version__),
        ("OpenCV", cv2.__version__),
        ("palmpay commit", git_commit()),
        ("date", utc_now()),
    ]


@dataclass(frozen=True)
class Run:
    """One benchmark run: the command that started it, when, and the load at its start."""

    command: str
    started: float = field(default_factory=time.perf_counter)
    load_at_start: float = field(default_factory=load_average)

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.started
