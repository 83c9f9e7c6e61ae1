"""Index replicas: every API process keeps its palm index in step with the database.

The database is the source of truth for templates; each API process holds a replica of the
palm index (:class:`~palmpay.api.palms.PalmDirectory`). Every change of the enrolled palms
writes a row to the change log in its own transaction (:mod:`palmpay.payments.changes`:
``seq``, customer, kind), and the :class:`IndexReplica` applies the rows past its
:attr:`~IndexReplica.position`:

1. **Load** (:meth:`IndexReplica.load`, at start-up): the log's head H is read first, then every
   template (``PaymentService.templates()``), then the changes after H. Seq values are
   commit-ordered (the change log's advisory lock), so every change up to H is in the templates
   read; a change after H that the read also saw is applied again, which is a no-op.
2. **Follow** (:mod:`palmpay.api.changefeed`, a thread): on PostgreSQL a dedicated psycopg
   connection runs ``LISTEN palm_changes``; every notification triggers a catch-up, as does
   every (re)connect of that connection and a poll every ``replica_poll_s`` (the safety net for
   a lost notification). On SQLite the poll is the only trigger.
3. **Apply** (:meth:`IndexReplica.catch_up`): the changes after the position, in seq order,
   batch by batch. A change is applied from the database's *current* state of its customer, so
   applying one twice (the process's own enrollment, which the route indexed after its commit;
   a change the load already saw) changes nothing: an active customer indexed with as many
   samples as the database holds templates is left alone; one not indexed, or indexed with
   another count (more templates added; the load read its templates page by page while it
   enrolled and saw only some), is indexed anew from the templates as ``templates()`` returns
   them, already under the cancelable transform (:meth:`PalmDirectory.add_protected`); a
   customer without templates (unenrolled, purged) is removed. A
   change that fails to apply (the database gone, an undecryptable row) is retried at the next
   trigger, never skipped: the position stops and :attr:`~IndexReplica.lag_seconds` grows.
4. **Enroll** (:meth:`IndexReplica.enrollment`): the duplicate-palm check, the insert and the
   index add run under the process's enrollment lock *and* a cross-process lock (on
   PostgreSQL a transaction advisory lock per merchant on its own connection, released if the
   process dies), after a catch-up to the log's head: two processes cannot enroll the same
   palm at one merchant at once, and each sees the other's enrollments (read-your-writes)
   before it checks. Enrollments at different merchants do not wait for each other's lock.

An unenrollment is committed, then removed from the index by the route; a catch-up that read
the customer's templates just before that commit may add them back, until the delete's own
change is applied a moment later. A payment re-reads the customer (``_payable`` in
``routes/payments.py``), so a palm in that window still does not pay.

SQLite (the embedded default) is for one API process: the change log is written and polled
the same way (so changes made by the CLI, e.g. ``palmpay retention apply``, reach a running
server), but the enrollment lock is the process's own, so ``palmpay serve --workers N`` refuses
N > 1 on SQLite (:func:`palmpay.api.server.serve`).

:attr:`IndexReplica.position`, :attr:`~IndexReplica.head_position` and
:attr:`~IndexReplica.lag_seconds` are read by ``/metrics`` through ``app.state.replica``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from palmpay.api.palms import PalmDirectory
from palmpay.config import Settings
from palmpay.embed import Template
from palmpay.payments.changes import Change, ChangeKind, changes_after, head
from palmpay.payments.errors import PaymentError
from palmpay.payments.merchants import DEFAULT_MERCHANT_ID

if TYPE_CHECKING:
    from palmpay.api.changefeed import ChangeFeed
    from palmpay.api.deps import AppState
    from palmpay.payments.service import PaymentService

__all__ = ["ENROLL_LOCK", "IndexReplica", "ReplicaStatus", "enrollment"]

log = logging.getLogger(__name__)

#: First key of the cross-process enrollment lock, ``pg_advisory_xact_lock(ENROLL_LOCK,
#: hashtext(merchant))`` ("Palm" in hex): one lock per merchant, whose gallery the
#: duplicate-palm check searches.
ENROLL_LOCK = 0x50616C6D
#: Changes read per query by :meth:`IndexReplica.catch_up`.
_BATCH = 500


@dataclass(frozen=True)
class ReplicaStatus:
    """A snapshot of an :class:`IndexReplica` (for logs and tests)."""

    position: int
    head_position: int
    lag_seconds: float
    applied: int
    listening: bool
    connections: int


class IndexReplica:
    """The process's palm index, kept in step with the change log (module docstring)."""

    def __init__(self, service: PaymentService, palms: PalmDirectory, settings: Settings
                 ) -> None:
        self.service = service
        self.palms = palms
        self.settings = settings
        self.db = service.db
        self._apply_lock = threading.RLock()  # one catch-up at a time (the feed, enrollments)
        self._meta = threading.Lock()  # the numbers below
        self._position = 0
        self._head = 0
        self._pending_since: float | None = None  # commit time of the oldest unapplied change
        self._applied = 0
        self._feed: ChangeFeed | None = None

    # -- what /metrics reads -------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Seq of the last change applied (every change up to it is in the index)."""
        return self._position

    @property
    def head_position(self) -> int:
        """Newest seq this replica knows committed (from the log or a notification)."""
        with self._meta:
            return max(self._head, self._position)

    @property
    def lag_seconds(self) -> float:
        """Seconds since the oldest change known committed but not yet applied was written;
        0.0 when caught up."""
        with self._meta:
            pending = self._pending_since
        return 0.0 if pending is None else max(0.0, time.time() - pending)

    @property
    def applied(self) -> int:
        """Changes read and applied since start (after the load)."""
        return self._applied

    @property
    def listening(self) -> bool:
        """Whether the PostgreSQL listener is connected (False on SQLite: polled)."""
        return self._feed is not None and self._feed.backend_pid is not None

    def status(self) -> ReplicaStatus:
        feed = self._feed
        return ReplicaStatus(self.position, self.head_position, self.lag_seconds,
                             self.applied, self.listening, feed.connections if feed else 0)

    # -- load and apply ------------------------------------------------------------------------
    def load(self) -> int:
        """Rebuild the index from the database and apply what committed meanwhile; returns the
        number of customers indexed."""
        with self._apply_lock:
            with self.db.session(readonly=True) as s:
                start = head(s)  # first: every change up to it is in the templates read next
            self.palms.load(self.service.templates())
            self._position = start
            with self._meta:
                self._head = max(self._head, start)
        self.catch_up()
        log.info("index replica loaded at change %d", self._position)
        return self.palms.customers

    def catch_up(self) -> int:
        """Apply every committed change after :attr:`position`; returns how many were read."""
        read = 0
        with self._apply_lock:
            while True:
                with self.db.session(readonly=True) as s:
                    batch = changes_after(s, self._position, _BATCH)
                if not batch:
                    break
                self._seen(batch)
                self._apply(batch)
                self._position = batch[-1].seq
                self._applied += len(batch)
                read += len(batch)
                if len(batch) < _BATCH:
                    break
            with self._meta:  # the log is read to its end: trust it over notifications
                self._head = self._position
                self._pending_since = None
        if read:
            log.debug("index replica: %d changes applied, at %d", read, self._position)
        return read

    def _seen(self, batch: list[Change]) -> None:
        with self._meta:
            self._head = max(self._head, batch[-1].seq)
            written = batch[0].created_at.timestamp()
            if self._pending_since is None or written < self._pending_since:
                self._pending_since = written

    def _apply(self, batch: list[Change]) -> None:
        """Bring each customer of ``batch`` to its current state in the database."""
        reindex: dict[str, bool] = {}  # customer -> index anew (templates were added)
        for change in batch:
            reindex[change.customer_id] = (reindex.get(change.customer_id, False)
                                           or change.kind is ChangeKind.TEMPLATES)
        current: dict[str, list[Template]] = {}
        for customer_id, template in self.service.templates(list(reindex)):
            current.setdefault(customer_id, []).append(template)
        for customer_id, anew in reindex.items():
            templates = current.get(customer_id)
            indexed = self.palms.indexed(customer_id)
            if not templates:
                if indexed:
                    self.palms.remove(customer_id)
                    log.info("index replica: customer %s removed", customer_id)
                continue
            if indexed == len(templates) and not anew:
                continue  # indexed already: this process's own enrollment, or the load
            if indexed:
                self.palms.remove(customer_id)
            self.palms.add_protected(customer_id, templates)
            log.info("index replica: customer %s indexed (%d templates)", customer_id,
                     len(templates))

    def notice(self, payloads: Iterable[str]) -> bool:
        """Record notified seqs (``NOTIFY`` payloads); True when one is past :attr:`position`
        (or unreadable): a catch-up is due."""
        due = False
        with self._meta:
            for payload in payloads:
                try:
                    seq = int(payload)
                except ValueError:
                    due = True
                    continue
                if seq > self._position:
                    due = True
                    self._head = max(self._head, seq)
            if due and self._pending_since is None:
                self._pending_since = time.time()
        return due

    # -- enrollment ----------------------------------------------------------------------------
    @contextmanager
    def enrollment(self, merchant: str = DEFAULT_MERCHANT_ID) -> Iterator[None]:
        """Duplicate check, insert and index add as one, across processes (module docstring):
        the process's enrollment lock, ``merchant``'s cross-process lock, then a catch-up to
        the head."""
        with self.palms.enrollment(), self._cross_process_lock(merchant), self._apply_lock:
            self.catch_up()
            yield

    @contextmanager
    def _cross_process_lock(self, merchant: str) -> Iterator[None]:
        if self.db.backend != "postgresql":
            yield  # SQLite: one process (serve refuses --workers > 1)
            return
        timeout_ms = int(self.settings.replica_lock_timeout_s * 1000)
        with self.db.engine.connect() as conn:
            conn.execute(text("SELECT set_config('lock_timeout', :ms, true)"),
                         {"ms": f"{timeout_ms}ms"})
            try:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key, hashtext(:merchant))"),
                             {"key": ENROLL_LOCK, "merchant": merchant})
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                    raise
                raise PaymentError("server_busy", "another enrollment held the enrollment lock "
                                   f"for {self.settings.replica_lock_timeout_s:g} s; retry",
                                   headers={"Retry-After": "1"}) from None
            try:
                yield
            finally:
                conn.rollback()  # releases the lock

    # -- the feed ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start following the change log (a daemon thread)."""
        from palmpay.api.changefeed import ChangeFeed

        if self._feed is None:
            self._feed = ChangeFeed(self, self.db, self.settings.replica_poll_s,
                                    self.settings.replica_reconnect_s)
            self._feed.start()

    def stop(self) -> None:
        """Stop following (waits for the thread)."""
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.stop()

    @property
    def feed(self) -> ChangeFeed | None:
        """The running change feed (None before :meth:`start` and after :meth:`stop`)."""
        return self._feed


def enrollment(state: AppState, merchant: str = DEFAULT_MERCHANT_ID
               ) -> AbstractContextManager[None]:
    """The enrollment lock of ``state`` for ``merchant``: its replica's (cross-process, after
    a catch-up) or, without a replica, the process's own."""
    if state.replica is not None:
        return state.replica.enrollment(merchant)
    return state.palms.enrollment()
