"""Lock-out of terminals that send wrong phone digits: a narrowed payment whose palm is not
recognised among the customers with those digits is a *failure*; after
``Settings.narrowing_max_failures`` failures in a row a terminal's narrowed payments answer 429
``too_many_attempts`` (with ``Retry-After``) for ``narrowing_lockout_s`` seconds. A recognised
payment resets the count. Kept in the database (``terminal_lockouts``), so every API process
sees the same count; one row per terminal, updated under a row lock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta

from palmpay.api.models import TerminalLockout
from palmpay.config import Settings
from palmpay.db import Database
from palmpay.payments.errors import PaymentError

__all__ = ["Lockouts"]

log = logging.getLogger(__name__)


class Lockouts:
    """Wrong-digit counts per terminal."""

    def __init__(self, db: Database, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.db, self.settings, self.clock = db, settings, clock

    def check(self, terminal_id: str) -> None:
        """Raise ``too_many_attempts`` while ``terminal_id`` is locked out."""
        now = self.clock()
        with self.db.session(readonly=True) as s:
            row = s.get(TerminalLockout, terminal_id)
            until = None if row is None else row.locked_until
        if until is not None and until > now:
            wait = max(1, math.ceil((until - now).total_seconds()))
            raise PaymentError("too_many_attempts",
                               f"too many wrong tries from this terminal; retry in {wait} s",
                               extra={"retry_after": wait},
                               headers={"Retry-After": str(wait)})

    def failed(self, terminal_id: str) -> None:
        """Count one wrong try; lock the terminal out at the limit."""
        now = self.clock()
        with self.db.session() as s:
            row = s.get(TerminalLockout, terminal_id, with_for_update=True)
            if row is None:
                row = TerminalLockout(terminal_id=terminal_id, failures=0, updated_at=now)
                s.add(row)
            row.failures = (row.failures or 0) + 1
            row.updated_at = now
            if row.failures >= self.settings.narrowing_max_failures:
                row.locked_until = now + timedelta(seconds=self.settings.narrowing_lockout_s)
                row.failures = 0
                log.warning("terminal %s locked out for %.0f s after %d wrong phone digits",
                            terminal_id, self.settings.narrowing_lockout_s,
                            self.settings.narrowing_max_failures)

    def succeeded(self, terminal_id: str) -> None:
        """A recognised narrowed payment: the count starts again."""
        with self.db.session() as s:
            row = s.get(TerminalLockout, terminal_id, with_for_update=True)
            if row is not None and row.failures:
                row.failures = 0
                row.updated_at = self.clock()
