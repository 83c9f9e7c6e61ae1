"""Lock-outs after repeated failed tries, kept in the database (``terminal_lockouts``), so every
API process sees the same count; one row per subject, updated under a row lock.

Three policies (:class:`LockoutPolicy`), each counting *failures in a row* for one subject:

- :data:`NARROWING` — a terminal's narrowed payments whose palm is not recognised among the
  customers with the given phone digits (``Settings.narrowing_max_failures`` /
  ``narrowing_lockout_s``); while locked, the terminal's narrowed payments are refused.
- :data:`UNRECOGNISED` — any payment of a terminal whose palm is not recognised, narrowed or
  not (``unrecognised_max_failures`` / ``unrecognised_lockout_s``); while locked, every payment
  of the terminal is refused before its frames are analysed. This is what stops a terminal key
  from probing the gallery with palm after palm.
- :data:`UNENROLL` — failed unenroll proofs of a kiosk key: palm or card digits not matching the
  customer, or no such customer (``unenroll_max_failures`` / ``unenroll_lockout_s``).

At the limit the subject answers 429 ``too_many_attempts`` (with ``Retry-After``) until the
lock-out ends; the count then starts again. A success (a recognised payment, a verified
unenroll) resets the count. The subject of a row is the policy's prefix and the API key id
(narrowing has no prefix: rows written before the other policies existed keep working).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from palmpay.api.models import TerminalLockout
from palmpay.config import Settings
from palmpay.db import Database
from palmpay.payments.errors import PaymentError

__all__ = ["LockoutPolicy", "Lockouts", "NARROWING", "UNENROLL", "UNRECOGNISED"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockoutPolicy:
    """What is counted: ``prefix`` of the row's subject, the settings holding the limit and the
    lock-out length, and ``what`` (for the problem's detail and the log)."""

    prefix: str
    max_failures_setting: str
    lockout_setting: str
    what: str
    who: str = "terminal"


NARROWING = LockoutPolicy("", "narrowing_max_failures", "narrowing_lockout_s",
                          "wrong phone digits")
UNRECOGNISED = LockoutPolicy("palm:", "unrecognised_max_failures", "unrecognised_lockout_s",
                             "unrecognised palms")
UNENROLL = LockoutPolicy("unenroll:", "unenroll_max_failures", "unenroll_lockout_s",
                         "failed unenroll proofs", who="kiosk")


class Lockouts:
    """Failure counts of one :class:`LockoutPolicy` (default :data:`NARROWING`)."""

    def __init__(self, db: Database, settings: Settings, clock: Callable[[], datetime],
                 policy: LockoutPolicy = NARROWING) -> None:
        self.db, self.settings, self.clock, self.policy = db, settings, clock, policy

    @property
    def max_failures(self) -> int:
        return int(getattr(self.settings, self.policy.max_failures_setting))

    @property
    def lockout_s(self) -> float:
        return float(getattr(self.settings, self.policy.lockout_setting))

    def _subject(self, key_id: str) -> str:
        return self.policy.prefix + key_id

    def check(self, key_id: str) -> None:
        """Raise ``too_many_attempts`` while ``key_id`` is locked out."""
        now = self.clock()
        with self.db.session(readonly=True) as s:
            row = s.get(TerminalLockout, self._subject(key_id))
            until = None if row is None else row.locked_until
        if until is not None and until > now:
            wait = max(1, math.ceil((until - now).total_seconds()))
            raise PaymentError("too_many_attempts",
                               f"too many {self.policy.what} from this {self.policy.who}; "
                               f"retry in {wait} s",
                               extra={"retry_after": wait},
                               headers={"Retry-After": str(wait)})

    def failed(self, key_id: str) -> None:
        """Count one failure; lock ``key_id`` out at the limit."""
        for attempt in range(3):
            try:
                self._count(key_id)
                return
            except IntegrityError:  # two processes created the row at once: count again
                if attempt == 2:
                    raise

    def _count(self, key_id: str) -> None:
        now = self.clock()
        subject = self._subject(key_id)
        with self.db.session() as s:
            row = s.get(TerminalLockout, subject, with_for_update=True)
            if row is None:
                row = TerminalLockout(terminal_id=subject, failures=0, updated_at=now)
                s.add(row)
            row.failures = (row.failures or 0) + 1
            row.updated_at = now
            if row.failures >= self.max_failures:
                row.locked_until = now + timedelta(seconds=self.lockout_s)
                row.failures = 0
                log.warning("%s %s locked out for %.0f s after %d %s", self.policy.who, key_id,
                            self.lockout_s, self.max_failures, self.policy.what)

    def succeeded(self, key_id: str) -> None:
        """A success: the count starts again."""
        with self.db.session() as s:
            row = s.get(TerminalLockout, self._subject(key_id), with_for_update=True)
            if row is not None and row.failures:
                row.failures = 0
                row.updated_at = self.clock()
