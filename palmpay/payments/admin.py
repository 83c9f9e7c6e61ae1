"""Operator commands behind ``palmpay keys rotate`` / ``palmpay keys retire`` and
``palmpay ledger check`` (wired by ``palmpay/cli.py``).

Key rotation, end to end, without downtime::

    palmpay keys rotate          # rotate_keys: new active KEK in the keyring file, then every
                                 # card and template DEK re-wrapped under it (batched, resumable)
    # restart servers at leisure: until then they reload the keyring file when they meet the
    # new KEK id; records they write meanwhile use the old KEK, so run rotate's re-wrap again:
    palmpay keys rotate --rewrap-only   # = rewrap(settings)
    palmpay keys retire KEK_ID   # retire_key: refuses while any record still uses the KEK
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from palmpay.config import Settings
from palmpay.db import Database, open_database
from palmpay.payments import ledger
from palmpay.payments.keys import (
    KeyringError,
    keyring_path,
    load_keyring,
    read_keyring_file,
    remove_kek,
    rotate,
)
from palmpay.payments.ledger import LedgerReport
from palmpay.payments.models import Card, Customer, PalmTemplate
from palmpay.payments.states import CustomerStatus
from palmpay.payments.vault import rewrap_all

__all__ = ["gallery_size", "rotate_keys", "rewrap", "retire_key", "kek_usage", "ledger_check"]

log = logging.getLogger(__name__)


def _database(settings: Settings) -> Database:
    return open_database(settings.resolved_database_url())


def _rotatable_path(settings: Settings):
    path = keyring_path(settings)
    if path is None:
        raise KeyringError(
            "key rotation needs a keyring file (PALMPAY_KEYRING_FILE, or dev mode's "
            "<data_dir>/keyring.json); a keyring given inline in PALMPAY_KEYRING cannot be "
            "rewritten: rotate it where it is stored and re-run `palmpay keys rotate "
            "--rewrap-only`"
        )
    if not path.exists():
        load_keyring(settings)  # dev mode creates it; otherwise raises a clear error
    return path


def rewrap(settings: Settings) -> int:
    """Re-wrap every record not under the active KEK (resumable); returns how many."""
    keyring = load_keyring(settings)
    db = _database(settings)
    try:
        with db.sessionmaker() as session:
            return rewrap_all(session, keyring, batch_size=settings.vault_rewrap_batch)
    finally:
        db.dispose()


def rotate_keys(settings: Settings) -> tuple[str, int]:
    """Add a new active KEK to the keyring file, then re-wrap every card and palm template DEK
    under it. Returns ``(new_kek_id, rewrapped_count)``. Old KEKs stay in the file."""
    path = _rotatable_path(settings)
    new_kek_id = rotate(path)
    count = rewrap(settings)
    log.info("rotation done: KEK %s active, %d records re-wrapped", new_kek_id, count)
    return new_kek_id, count


def kek_usage(settings: Settings) -> dict[str, int]:
    """Records (active cards + templates) per KEK id."""
    db = _database(settings)
    try:
        with db.session(readonly=True) as s:
            usage: dict[str, int] = {}
            for model in (Card, PalmTemplate):
                for kek_id, n in s.execute(
                    select(model.kek_id, func.count())
                    .where(model.kek_id.is_not(None))
                    .group_by(model.kek_id)
                ):
                    if kek_id is not None:  # filtered out by the query; for the type
                        usage[kek_id] = usage.get(kek_id, 0) + int(n)
            return usage
    finally:
        db.dispose()


def retire_key(settings: Settings, kek_id: str) -> None:
    """Remove an old KEK from the keyring file, refusing while any record still uses it (run
    :func:`rewrap` first) or when it is the active KEK.

    Retire only once every server runs with the rotated keyring (restarted, or has reloaded it):
    a server still holding the old keyring in memory wraps new records with the old KEK.
    """
    path = _rotatable_path(settings)
    if read_keyring_file(path).active_kek_id == kek_id:
        raise KeyringError(f"KEK {kek_id} is the active key; rotate first")
    in_use = kek_usage(settings).get(kek_id, 0)
    if in_use:
        raise KeyringError(
            f"KEK {kek_id} still wraps {in_use} records: run `palmpay keys rotate --rewrap-only` "
            "(rewrap) first"
        )
    remove_kek(path, kek_id)


def ledger_check(settings: Settings) -> LedgerReport:
    """:func:`palmpay.payments.ledger.check` on the configured database."""
    db = _database(settings)
    try:
        with db.session(readonly=True) as s:
            return ledger.check(s)
    finally:
        db.dispose()


def gallery_size(settings: Settings) -> tuple[int, int]:
    """(active customers, their palm templates): the gallery the API's index is built from."""
    db = _database(settings)
    try:
        with db.session(readonly=True) as s:
            customers = s.scalar(select(func.count()).select_from(Customer).where(
                Customer.status == CustomerStatus.ACTIVE)) or 0
            samples = s.scalar(select(func.count(PalmTemplate.id)).join(
                Customer, Customer.id == PalmTemplate.customer_id).where(
                Customer.status == CustomerStatus.ACTIVE)) or 0
        return int(customers), int(samples)
    finally:
        db.dispose()
