"""Which API processes are alive: a row per process start and a lease it keeps renewing.

Crash recovery needs to tell a request that is still running from one whose process died (a
``kill -9`` leaves its Idempotency-Key claim ``in_progress`` and its authorisation intent
``open``). Each process registers a :class:`~palmpay.payments.models.ServiceInstance` with a
random id (a boot id: a restarted process gets a new one), its host name and pid, and renews
``lease_expires_at`` every third of ``lease_s`` (``PALMPAY_INSTANCE_LEASE_S``) from a daemon
thread, which also runs the maintenance callback (reconciling what dead owners left).

:meth:`InstanceRegistry.alive` says whether an owner id may still be working:

- this registry's own id: alive;
- a stopped instance (clean shutdown): dead;
- an instance on this host whose pid is gone, or is this very process (a restarted container
  reuses pids): dead at once, without waiting for its lease;
- otherwise alive until its lease expires;
- an id with no row (an owner that never registered, e.g. a command-line process): alive until
  ``since + lease_s``, ``since`` being when the claimed work began.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from palmpay.db import Database, new_id, utcnow
from palmpay.payments.models import ServiceInstance

__all__ = ["InstanceRegistry"]

log = logging.getLogger(__name__)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class InstanceRegistry:
    """This process's :class:`ServiceInstance` row, its heartbeat and the liveness rule.

    :param lease_s: how long a heartbeat vouches for the instance.
    :param clock: UTC now (the app's clock, so tests can move it).
    """

    def __init__(self, db: Database, lease_s: float,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_s)
        self.clock = clock
        self.id = new_id("ins")
        self.pid = os.getpid()
        self.hostname = socket.gethostname()[:255]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self) -> None:
        now = self.clock()
        with self.db.session() as s:
            s.add(ServiceInstance(id=self.id, hostname=self.hostname, pid=self.pid,
                                  started_at=now, heartbeat_at=now,
                                  lease_expires_at=now + self.lease))
        log.info("instance %s registered (pid %d on %s, lease %.1fs)", self.id, self.pid,
                 self.hostname, self.lease.total_seconds())

    def beat(self) -> None:
        """Renew the lease."""
        now = self.clock()
        with self.db.session() as s:
            row = s.get(ServiceInstance, self.id)
            if row is not None:
                row.heartbeat_at = now
                row.lease_expires_at = now + self.lease

    def alive(self, owner_id: str | None, since: datetime) -> bool:
        """Whether ``owner_id`` may still be working on something it began at ``since``."""
        if owner_id == self.id:
            return True
        now = self.clock()
        if owner_id is None:
            return since + self.lease > now
        with self.db.session(readonly=True) as s:
            row = s.get(ServiceInstance, owner_id)
        if row is None:
            return since + self.lease > now
        if row.stopped_at is not None:
            return False
        if row.hostname == self.hostname and (row.pid == self.pid or not _pid_running(row.pid)):
            return False
        return row.lease_expires_at > now

    def start(self, maintenance: Callable[[], object] | None = None) -> None:
        """Start the heartbeat thread (``maintenance`` runs after each beat)."""
        interval = max(self.lease.total_seconds() / 3, 0.05)

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.beat()
                    if maintenance is not None:
                        maintenance()
                except Exception:
                    log.exception("instance heartbeat failed")

        self._thread = threading.Thread(target=run, name="palmpay-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat and mark the instance stopped (its claims are released)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with self.db.session() as s:
                row = s.get(ServiceInstance, self.id)
                if row is not None:
                    row.stopped_at = row.lease_expires_at = self.clock()
        except Exception:
            log.exception("could not mark instance %s stopped", self.id)
