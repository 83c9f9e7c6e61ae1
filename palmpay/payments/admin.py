"""Operator commands behind ``palmpay keys rotate`` / ``palmpay keys retire`` and
``palmpay ledger check`` (wired by ``palmpay/cli.py``).

Key rotation, end to end, without downtime::

    palmpay keys rotate          # rotate_keys: new active KEK in the keyring file, then every
                                 # card and template DEK re-wrapped under it (batched, resumable)
    # restart servers at leisure: until then they reload the keyring file when they meet the
    # new KEK id; records they write meanwhile use the old KEK, so run rotate's re-wrap again:
    palmpay keys rotate --rewrap-only   # = rewrap(settings)
    palmpay keys retire KEK_ID   # retire_key: refuses while any record still uses the KEK

Cancelable-template renewal (:mod:`palmpay.payments.renewal`), the same way::

    palmpay keys renew-templates               # renew_templates: new template key, every
                                               # stored template moved under it
    palmpay keys renew-templates --renew-only  # again after servers restarted
    palmpay keys retire TFK_ID                 # refuses while a template still uses it

``palmpay retention apply`` (:func:`retention`) deletes the templates of inactive customers
(:mod:`palmpay.payments.retention`). Every command here writes an audit event (actor ``cli``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select

from palmpay.config import Settings
from palmpay.db import Database, open_database, utcnow
from palmpay.payments import ledger
from palmpay.payments.audit import AuditAction, AuditLog
from palmpay.payments.keys import (
    KeyringError,
    keyring_path,
    load_keyring,
    read_keyring_file,
    remove_kek,
    remove_template_key,
    rotate,
    rotate_template_key,
)
from palmpay.payments.ledger import LedgerReport
from palmpay.payments.models import Card, Customer, PalmTemplate
from palmpay.payments.renewal import active_transform, renew_all, template_key_usage
from palmpay.payments.retention import RetentionReport, apply_retention
from palmpay.payments.states import CustomerStatus
from palmpay.payments.vault import CardVault, rewrap_all

__all__ = ["gallery_size", "rotate_keys", "rewrap", "retire_key", "kek_usage", "ledger_check",
           "renew_templates", "retention"]

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
    _audit(settings, AuditAction.KEY_ROTATE, new_kek_id, f"rewrapped_{count}")
    return new_kek_id, count


def _audit(settings: Settings, action: AuditAction, object_id: str | None,
           outcome: str) -> None:
    db = _database(settings)
    try:
        AuditLog(db).record("cli", action, object_id, outcome)
    finally:
        db.dispose()


def renew_templates(settings: Settings, *, new_key: bool = True) -> tuple[str | None, int]:
    """Add a new active template key to the keyring file (unless ``new_key`` is false), then
    move every stored palm template under it (:func:`palmpay.payments.renewal.renew_all`:
    batched, resumable, no re-enrolment). Returns ``(template_key_id, renewed_count)``.
    Servers pick the new key up when they restart."""
    if new_key:
        rotate_template_key(_rotatable_path(settings))
    keyring = load_keyring(settings)
    target = active_transform(keyring)
    db = _database(settings)
    try:
        with db.sessionmaker() as session:
            count = renew_all(session, CardVault(keyring), target,
                              batch_size=settings.vault_rewrap_batch)
        AuditLog(db).record("cli", AuditAction.TEMPLATES_RENEW, target.key_id,
                            f"renewed_{count}")
    finally:
        db.dispose()
    log.info("template renewal done: key %s active, %d templates renewed", target.key_id, count)
    return target.key_id, count


def retention(settings: Settings, now: datetime | None = None, *,
              dry_run: bool = False) -> RetentionReport:
    """:func:`palmpay.payments.retention.apply_retention` with ``PALMPAY_RETENTION_MONTHS``
    on the configured database (``now``: UTC now by default)."""
    db = _database(settings)
    try:
        return apply_retention(db, now or utcnow(), settings.retention_months, dry_run=dry_run)
    finally:
        db.dispose()


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
    if kek_id.startswith("tfk_"):
        _retire_template_key(settings, path, kek_id)
        return
    if read_keyring_file(path).active_kek_id == kek_id:
        raise KeyringError(f"KEK {kek_id} is the active key; rotate first")
    in_use = kek_usage(settings).get(kek_id, 0)
    if in_use:
        raise KeyringError(
            f"KEK {kek_id} still wraps {in_use} records: run `palmpay keys rotate --rewrap-only` "
            "(rewrap) first"
        )
    remove_kek(path, kek_id)
    _audit(settings, AuditAction.KEY_RETIRE, kek_id, "ok")


def _retire_template_key(settings: Settings, path, key_id: str) -> None:
    """Remove an old template key, refusing while any stored template is under it."""
    if read_keyring_file(path).active_template_key_id == key_id:
        raise KeyringError(f"template key {key_id} is the active key; renew first")
    db = _database(settings)
    try:
        with db.session(readonly=True) as s:
            in_use = template_key_usage(s).get(key_id, 0)
    finally:
        db.dispose()
    if in_use:
        raise KeyringError(f"template key {key_id} still protects {in_use} templates: run "
                           "`palmpay keys renew-templates --renew-only` first")
    remove_template_key(path, key_id)
    _audit(settings, AuditAction.KEY_RETIRE, key_id, "ok")


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
