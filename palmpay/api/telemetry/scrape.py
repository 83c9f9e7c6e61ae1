"""The scrape: per-process state, the webhook queue, several worker processes, and
:func:`render` (:mod:`palmpay.api.telemetry`)."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import case, func, select

from palmpay import __version__
from palmpay.api.models import WebhookDelivery
from palmpay.api.telemetry.recording import multiprocess_dir

if TYPE_CHECKING:
    from palmpay.api.deps import AppState

__all__ = ["Publisher", "Snapshot", "StateCollector", "reap_dead_workers", "render", "snapshot"]

log = logging.getLogger(__name__)


# -- scrape-time state ------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """One process's view: its index, operating point and replica (None: not known)."""

    samples: int
    customers: int
    threshold: float | None
    n_safe: int | None
    narrowing_required: bool | None
    replica_position: int | None
    replica_head: int | None
    replica_lag_s: float | None


def _number(obj: object, name: str) -> float | None:
    try:
        value = getattr(obj, name, None)
        return None if value is None or isinstance(value, bool) else float(value)
    except Exception:  # a property that failed: leave the metric out
        log.debug("replica %s unreadable", name, exc_info=True)
        return None


def snapshot(state: AppState, app_state: object | None = None) -> Snapshot:
    """What ``state`` (and ``app_state``, FastAPI's ``app.state``) hold now."""
    palms = state.palms
    threshold: float | None
    n_safe: int | None
    narrowing: bool | None
    try:
        point = palms.operating_point()
        threshold, n_safe = float(point["threshold"]), int(point["n_safe"])
        narrowing = bool(point["narrowing_required"])
    except Exception:  # no open-set calibration: the index size still counts
        log.debug("no operating point for metrics", exc_info=True)
        threshold = n_safe = narrowing = None
    replica = getattr(state, "replica", None) or getattr(app_state, "replica", None)
    position, head, lag = (None, None, None) if replica is None else (
        _number(replica, "position"), _number(replica, "head_position"),
        _number(replica, "lag_seconds"))
    return Snapshot(palms.samples, palms.customers, threshold, n_safe, narrowing,
                    None if position is None else int(position),
                    None if head is None else int(head), lag)


_PROCESS_HELP = {
    "palmpay_index_samples": "Palm samples (templates) in this process's index.",
    "palmpay_index_customers": "Customers in this process's index.",
    "palmpay_open_set_threshold": "Decision threshold of a search over the whole index.",
    "palmpay_open_set_n_safe_samples": "N_safe: the largest gallery (samples) searched on "
                                       "the palm alone; past it payments need phone digits.",
    "palmpay_narrowing_required": "1 when the whole index is past N_safe.",
    "palmpay_replica_position": "Last palm change-log position this process's index applied.",
    "palmpay_replica_head_position": "Newest palm change-log position this process has "
                                     "seen committed.",
    "palmpay_replica_lag_seconds": "How far this process's index replica is behind the "
                                   "database.",
    "process_resident_memory_bytes": "Resident memory of this worker process.",
}


def _values(snap: Snapshot) -> dict[str, float]:
    values: dict[str, float | None] = {
        "palmpay_index_samples": snap.samples, "palmpay_index_customers": snap.customers,
        "palmpay_open_set_threshold": snap.threshold,
        "palmpay_open_set_n_safe_samples": snap.n_safe,
        "palmpay_narrowing_required": (None if snap.narrowing_required is None
                                       else float(snap.narrowing_required)),
        "palmpay_replica_position": snap.replica_position,
        "palmpay_replica_head_position": snap.replica_head,
        "palmpay_replica_lag_seconds": snap.replica_lag_s,
    }
    return {name: float(v) for name, v in values.items() if v is not None}


class StateCollector:
    """Scrape-time metrics of one app: the webhook queue and database reachability (shared by
    every process), and, with ``per_process``, this process's :class:`Snapshot`."""

    def __init__(self, state: AppState | None, app_state: object | None = None,
                 per_process: bool = True) -> None:
        self.state = state
        self.app_state = app_state
        self.per_process = per_process

    def collect(self) -> Iterable[Metric]:
        backend = self.state.db.backend if self.state is not None else "none"
        info = InfoMetricFamily("palmpay_build", "PalmPay version and database backend.")
        info.add_metric([], {"version": __version__, "backend": str(backend)})
        yield info
        if self.state is None:  # starting: nothing built yet
            return
        if self.per_process:
            for name, value in _values(snapshot(self.state, self.app_state)).items():
                yield GaugeMetricFamily(name, _PROCESS_HELP[name], value=value)
        yield from self._webhooks()

    def _webhooks(self) -> Iterator[Metric]:
        assert self.state is not None
        pending = WebhookDelivery.state == "pending"
        try:
            with self.state.db.session(readonly=True) as session:
                waiting, retrying, oldest = session.execute(select(
                    func.count(), func.coalesce(func.sum(case(
                        (WebhookDelivery.attempts > 0, 1), else_=0)), 0),
                    func.min(WebhookDelivery.created_at)).where(pending)).one()
                failed = session.scalar(select(func.count()).select_from(WebhookDelivery)
                                        .where(WebhookDelivery.state == "failed"))
        except Exception as exc:  # report, never fail the scrape
            log.warning("metrics: database unreachable (%s)", type(exc).__name__)
            yield GaugeMetricFamily("palmpay_database_up", "1 when the scrape's database "
                                    "query succeeded.", value=0)
            return
        yield GaugeMetricFamily("palmpay_database_up", "1 when the scrape's database query "
                                "succeeded.", value=1)
        yield GaugeMetricFamily("palmpay_webhook_deliveries_pending", "Webhook deliveries "
                                "not yet delivered (waiting for a first attempt or a retry).",
                                value=waiting)
        yield GaugeMetricFamily("palmpay_webhook_deliveries_retrying", "Pending webhook "
                                "deliveries that already failed at least once.", value=retrying)
        yield GaugeMetricFamily("palmpay_webhook_deliveries_failed", "Webhook deliveries given "
                                "up after webhook_max_attempts.", value=failed or 0)
        age = 0.0 if oldest is None else max(
            (self.state.clock() - oldest).total_seconds(), 0.0)
        yield GaugeMetricFamily("palmpay_webhook_oldest_pending_age_seconds", "Age of the "
                                "oldest pending webhook delivery (0: none).", value=age)


# -- several processes ----------------------------------------------------------------------
def _resident_bytes() -> float | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return float(pages * os.sysconf("SC_PAGE_SIZE"))


class Publisher:
    """Multi-process mode: this worker's :class:`Snapshot` as ``pid``-labelled gauges, every
    ``every_s`` (a thread) and at each scrape it answers. Does nothing in one process."""

    _gauges: dict[str, Gauge] = {}
    _lock = threading.Lock()

    def __init__(self, state: AppState, app_state: object | None = None,
                 every_s: float | None = None) -> None:
        self.state = state
        self.app_state = app_state
        self.every_s = every_s or state.settings.metrics_refresh_s
        self.enabled = multiprocess_dir() is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def _gauge(cls, name: str) -> Gauge:
        with cls._lock:  # created when first needed: no replica, no replica series
            if name not in cls._gauges:
                cls._gauges[name] = Gauge(name, _PROCESS_HELP[name], multiprocess_mode="liveall",
                                          registry=None)
            return cls._gauges[name]

    def publish(self) -> None:
        """Write this process's values now (and forget the gauges of dead workers)."""
        if not self.enabled:
            return
        values = _values(snapshot(self.state, self.app_state))
        resident = _resident_bytes()
        if resident is not None:
            values["process_resident_memory_bytes"] = resident
        for name, value in values.items():
            self._gauge(name).set(value)
        reap_dead_workers()

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self.publish()
        self._thread = threading.Thread(target=self._run, name="palmpay-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.publish()
            except Exception:  # keep publishing; the next round may work
                log.exception("metrics publisher round failed")

    def stop(self) -> None:
        """Stop the thread; this process's gauges leave the scrape."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if self.enabled:
            mark_process_dead(os.getpid())


_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def reap_dead_workers(folder: Path | None = None) -> list[int]:
    """Remove the live-gauge files of processes that no longer run (a worker that crashed or
    was replaced); returns their pids. Counters and histograms of dead workers stay counted."""
    folder = folder or multiprocess_dir()
    if folder is None:
        return []
    dead = set()
    for path in folder.glob("gauge_live*.db"):
        match = _LIVE_FILE.search(path.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:  # alive, another user's
            pass
    for pid in dead:
        mark_process_dead(pid, str(folder))
    return sorted(dead)


class _Scrape:
    def __init__(self, *sources: Any) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def render(state: AppState | None, app_state: object | None = None,
           accept: str = "") -> tuple[bytes, str]:
    """The scrape: (body, content type) in the format ``accept`` asks for (Prometheus text
    0.0.4 by default)."""
    encoder, content_type = choose_encoder(accept)
    folder = multiprocess_dir()
    if folder is None:
        return encoder(_Scrape(REGISTRY, StateCollector(state, app_state))), content_type
    if state is not None:
        Publisher(state, app_state).publish()
    for attempt in range(3):  # a dead worker's file may vanish while it is read
        try:
            merged = MultiProcessCollector(None, str(folder))
            return encoder(_Scrape(merged, StateCollector(state, app_state, per_process=False))
                           ), content_type
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
