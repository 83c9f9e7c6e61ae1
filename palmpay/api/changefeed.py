"""The thread that tells an :class:`~palmpay.api.replica.IndexReplica` when to catch up.

PostgreSQL: a dedicated psycopg 3 connection (autocommit, the engine's connection arguments)
runs ``LISTEN palm_changes`` and waits in ``select()`` on its socket (and on a wake-up socket
for :meth:`ChangeFeed.stop`). It catches up

- right after every (re)connect: whatever committed while nothing listened;
- on every notification past the replica's position (the payload is the change's seq);
- every ``poll_s`` seconds, after a ``SELECT 1`` on the listening connection (a server that
  went away without closing the socket shows there): the safety net for a lost notification.

Any error (the connection terminated, PostgreSQL restarted, a catch-up failing) closes the
connection; the feed waits ``reconnect_s`` (doubling on every failure in a row, up to
:data:`_MAX_BACKOFF_S`) and connects again, and the reconnect's catch-up brings the replica
back in step.

SQLite: no notifications; a catch-up every ``poll_s`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from typing import TYPE_CHECKING

from palmpay.db import Database
from palmpay.payments.changes import CHANNEL

if TYPE_CHECKING:
    from palmpay.api.replica import IndexReplica

__all__ = ["ChangeFeed"]

log = logging.getLogger(__name__)

#: Seconds a new listening connection may take to connect.
_CONNECT_TIMEOUT_S = 5
#: Longest wait between two reconnects while the database stays unreachable.
_MAX_BACKOFF_S = 30.0


class ChangeFeed:
    """Follows the change log for one replica (module docstring)."""

    def __init__(self, replica: IndexReplica, db: Database, poll_s: float,
                 reconnect_s: float) -> None:
        self.replica = replica
        self.db = db
        self.poll_s = poll_s
        self.reconnect_s = reconnect_s
        #: Backend pid of the listening connection while connected (PostgreSQL), else None.
        self.backend_pid: int | None = None
        #: Listening connections made so far (1 + reconnects).
        self.connections = 0
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="palmpay-replica", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop and wait for the thread (at most ``timeout_s``)."""
        self._stop.set()
        with contextlib.suppress(OSError):  # the socket pair lives as long as the feed
            self._wake_w.send(b"x")
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # pragma: no cover - stuck in a connect
            log.warning("index replica: change feed still running after %.0f s", timeout_s)
            return
        self._wake_r.close()
        self._wake_w.close()

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        postgres = self.db.backend == "postgresql"
        failures = 0
        while not self._stop.is_set():
            connections = self.connections
            try:
                if postgres:
                    self._listen()
                else:
                    self._poll()
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect and catch up
                self.backend_pid = None
                if self._stop.is_set():
                    break
                failures = 1 if self.connections > connections else failures + 1
                delay = min(self.reconnect_s * 2 ** (failures - 1), _MAX_BACKOFF_S)
                log.warning("index replica: change feed interrupted (%s: %s); again in %.1f s",
                            type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc)
                            else "", delay)
                self._stop.wait(delay)
        self.backend_pid = None

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.replica.catch_up()

    def _connect(self):  # -> psycopg.Connection
        import psycopg

        args, kwargs = self.db.engine.dialect.create_connect_args(self.db.engine.url)
        kwargs.pop("context", None)  # SQLAlchemy's adapters: not needed for LISTEN
        kwargs.setdefault("connect_timeout", _CONNECT_TIMEOUT_S)
        return psycopg.connect(*args, **kwargs, autocommit=True)

    def _listen(self) -> None:
        with self._connect() as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.connections += 1
            self.backend_pid = conn.info.backend_pid
            log.info("index replica: listening on %s (connection %d)", CHANNEL,
                     self.connections)
            self.replica.catch_up()  # whatever committed while nothing listened
            next_poll = time.monotonic() + self.poll_s
            while not self._stop.is_set():
                wait = max(0.0, next_poll - time.monotonic())
                ready, _, _ = select.select([conn.fileno(), self._wake_r], [], [], wait)
                if self._wake_r in ready:
                    continue  # stop() woke us: the loop condition ends it
                payloads = [n.payload for n in conn.notifies(timeout=0)]
                if payloads and self.replica.notice(payloads):
                    self.replica.catch_up()
                if time.monotonic() >= next_poll:
                    conn.execute("SELECT 1")  # a server gone silently raises here
                    self.replica.catch_up()
                    next_poll = time.monotonic() + self.poll_s
