"""Rate limits and the back-off on unknown API keys, with counters in the database.

:class:`SqlStorage` is a :class:`limits.storage.Storage` over the ``rate_limit_counters`` table
(migration ``0005_tenancy``), so every API process — uvicorn workers, hosts behind one load
balancer — shares the counters; :class:`RateLimits` runs the ``limits`` library's
:class:`~limits.strategies.FixedWindowRateLimiter` on it. A fixed window starts at its first
hit and lasts the rate's period (``60/minute``: 60 hits, then 429 until a minute after the first
one). The time comes from the app's clock, so tests drive windows with a fake clock.

Limits (rates in :class:`~palmpay.config.Settings`, ``PALMPAY_RATE_LIMIT_*``):

- ``rate_limit_requests`` per API key, on every authenticated request
  (:func:`palmpay.api.deps.require_scope`);
- ``rate_limit_payments`` per terminal key on ``POST /v1/payments``;
- ``rate_limit_customers`` per key on customer enrollment, reads, unenrollment and deletion.

Over a limit the request answers 429 ``rate_limited`` with ``Retry-After`` (seconds until the
window ends) and ``retry_after`` in the body, before any work is done.

:class:`BadKeyBackoff`: per client address, every request with an unknown or revoked key counts;
after ``bad_key_max_failures`` of them within ``bad_key_window_s`` the address is blocked for
``bad_key_backoff_s``, doubling at every further block (up to ``bad_key_backoff_max_s``; the
number of blocks is remembered for :data:`STRIKE_MEMORY_S`). While blocked, every request from
the address that carries a key answers 429 ``rate_limited`` *before* the key is looked up, a
valid key included: guessing gets no answer at all. The address is the peer of the HTTP
connection (behind a reverse proxy run uvicorn with ``--proxy-headers`` and
``--forwarded-allow-ips`` so that it is the client's).

Each counted hit is one short write transaction: one `INSERT … ON CONFLICT DO UPDATE` statement.
:func:`purge_counters` deletes expired rows (run by the webhook dispatcher's maintenance).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from limits import RateLimitItem, parse
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import CursorResult, case, delete, literal, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from palmpay.api.models import RateLimitCounter
from palmpay.config import Settings
from palmpay.db import Database, utcnow
from palmpay.payments.errors import PaymentError

__all__ = ["STRIKE_MEMORY_S", "BadKeyBackoff", "RateLimits", "SqlStorage", "purge_counters",
           "rate_limited"]

log = logging.getLogger(__name__)

#: How long the number of back-offs of one address is remembered (each doubles the next).
STRIKE_MEMORY_S = 24 * 3600.0
_MAX_KEY = 200  # rate_limit_counters.key width


def rate_limited(wait: int, what: str) -> PaymentError:
    """The 429 ``rate_limited`` problem, retry in ``wait`` seconds."""
    wait = max(1, wait)
    return PaymentError("rate_limited", f"too many {what}; retry in {wait} s",
                        extra={"retry_after": wait}, headers={"Retry-After": str(wait)})


class SqlStorage(Storage):
    """A ``limits`` storage over ``rate_limit_counters``: ``incr``, ``get``, ``get_expiry``,
    ``clear``, ``reset`` and ``check`` on one row per key, in the clock's time (Unix seconds
    for ``get_expiry``). Not registered under a URI scheme: it is built from a
    :class:`~palmpay.db.Database`."""

    STORAGE_SCHEME = None

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(None)
        self.db, self.clock = db, clock

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    @staticmethod
    def _key(key: str) -> str:
        return key[:_MAX_KEY]

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add ``amount`` to the key's count (a new window of ``expiry`` seconds when none is
        running); returns the new count. One upsert statement (``INSERT … ON CONFLICT DO
        UPDATE … RETURNING``, SQLite ≥ 3.35 and PostgreSQL): every request counts here, so
        no read-then-write and no retry when two processes create the row at once."""
        now = self.clock()
        expires = RateLimitCounter.expires_at
        fresh = literal(now + timedelta(seconds=expiry), expires.type)
        insert = pg_insert if self.db.backend == "postgresql" else sqlite_insert
        expired = expires <= now
        upsert = insert(RateLimitCounter).values(key=self._key(key), count=amount,
                                                 expires_at=fresh)
        stmt = upsert.on_conflict_do_update(
            index_elements=[RateLimitCounter.key],
            set_={"count": case((expired, literal(amount)), else_=RateLimitCounter.count + amount),
                  "expires_at": case((expired, fresh), else_=expires)},
        ).returning(RateLimitCounter.count)
        with self.db.session() as s:
            return int(s.execute(stmt).scalar_one())

    def _row(self, key: str) -> RateLimitCounter | None:
        with self.db.session(readonly=True) as s:
            row = s.get(RateLimitCounter, self._key(key))
        return row if row is not None and row.expires_at > self.clock() else None

    def get(self, key: str) -> int:
        row = self._row(key)
        return 0 if row is None else row.count

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return (self.clock() if row is None else row.expires_at).timestamp()

    def check(self) -> bool:
        try:
            with self.db.session(readonly=True) as s:
                s.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.db.session() as s:
            result = cast("CursorResult[Any]", s.execute(delete(RateLimitCounter)))
        return result.rowcount

    def clear(self, key: str) -> None:
        with self.db.session() as s:
            s.execute(delete(RateLimitCounter).where(RateLimitCounter.key == self._key(key)))


def purge_counters(db: Database, now: datetime | None = None) -> int:
    """Delete expired counters; returns how many."""
    now = now or utcnow()
    with db.session() as s:
        result = cast("CursorResult[Any]", s.execute(
            delete(RateLimitCounter).where(RateLimitCounter.expires_at <= now)))
    return result.rowcount or 0


class RateLimits:
    """The API's rate limits over :class:`SqlStorage` (module docstring)."""

    def __init__(self, db: Database, settings: Settings,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.clock = settings, clock
        self.storage = SqlStorage(db, clock)
        self.strategy = FixedWindowRateLimiter(self.storage)

    def hit(self, rate: str | RateLimitItem, what: str, *identifiers: str) -> None:
        """Count one hit of ``rate`` for ``identifiers``; 429 ``rate_limited`` over it."""
        item = parse(rate) if isinstance(rate, str) else rate
        if self.strategy.hit(item, *identifiers):
            return
        reset = self.strategy.get_window_stats(item, *identifiers).reset_time
        wait = math.ceil(reset - self.clock().timestamp())
        log.info("rate limit %s hit by %s: %s", item, "/".join(identifiers), what)
        raise rate_limited(wait, what)

    def requests(self, key_id: str) -> None:
        """Any request of one API key."""
        self.hit(self.settings.rate_limit_requests, "requests from this API key", "key", key_id)

    def payments(self, key_id: str) -> None:
        """``POST /v1/payments`` of one terminal."""
        self.hit(self.settings.rate_limit_payments, "payments from this terminal", "payments",
                 key_id)

    def customers(self, key_id: str) -> None:
        """Customer enrollments, reads, unenrollments and deletions of one key."""
        self.hit(self.settings.rate_limit_customers, "customer requests from this API key",
                 "customers", key_id)


class BadKeyBackoff:
    """Growing back-off of client addresses that send unknown API keys (module docstring)."""

    def __init__(self, db: Database, settings: Settings,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.clock = settings, clock
        self.storage = SqlStorage(db, clock)

    def check(self, address: str) -> None:
        """429 ``rate_limited`` while ``address`` is blocked."""
        block = f"badkey-block/{address}"
        if self.storage.get(block) > 0:
            wait = math.ceil(self.storage.get_expiry(block) - self.clock().timestamp())
            raise rate_limited(wait, "unknown API keys from this address")

    def failed(self, address: str) -> None:
        """Count one unknown key from ``address``; block it at the limit."""
        settings = self.settings
        failures = self.storage.incr(f"badkey-fail/{address}", settings.bad_key_window_s)
        if failures < settings.bad_key_max_failures:
            return
        self.storage.clear(f"badkey-fail/{address}")
        strikes = self.storage.incr(f"badkey-strike/{address}", STRIKE_MEMORY_S)
        delay = min(settings.bad_key_backoff_max_s,
                    settings.bad_key_backoff_s * 2 ** min(strikes - 1, 30))
        self.storage.incr(f"badkey-block/{address}", delay)
        log.warning("client %s blocked for %.0f s after %d unknown API keys (block %d)",
                    address, delay, failures, strikes)

    def blocked_addresses(self) -> list[str]:
        """Addresses blocked now (for operators and tests)."""
        with self.storage.db.session(readonly=True) as s:
            keys = s.scalars(select(RateLimitCounter.key).where(
                RateLimitCounter.key.startswith("badkey-block/"),
                RateLimitCounter.expires_at > self.clock()))
            return sorted(k.removeprefix("badkey-block/") for k in keys)
