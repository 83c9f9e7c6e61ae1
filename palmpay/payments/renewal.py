"""Renewal of cancelable templates: every stored template moved under the active template key
(``palmpay keys renew-templates``), without re-enrolling anyone.

A stored template row names the template key it is under (``palm_templates.transform_id``;
NULL: stored in clear before migration ``0006_audit``). Renewal opens each row not under the
active key, inverts its old transform (:meth:`TemplateTransform.reveal`), applies the active
one (:meth:`TemplateTransform.protect`) and seals it again under a fresh data key (the active
KEK). Like :func:`palmpay.payments.vault.rewrap_all` it works in batches, one transaction per
batch, rows locked ``FOR UPDATE`` on PostgreSQL, and is idempotent and restartable (rows already
under the active key are skipped).

Running servers keep the transform they started with (their index is built under it) and
convert any row under another key when they rebuild their index (:func:`convert`); templates
they enrol meanwhile are stored under their (old) key, so run the renewal again after every
server has restarted, then retire the old key (``palmpay keys retire tfk_...``, refused while
a template still uses it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from palmpay.embed import Template
from palmpay.payments.cancelable import IDENTITY, TemplateTransform, transform_for
from palmpay.payments.keys import Keyring, KeyringError
from palmpay.payments.models import PalmTemplate
from palmpay.payments.vault import DEFAULT_REWRAP_BATCH, CardVault

__all__ = ["active_transform", "transform_of", "convert", "renew_all", "template_key_usage"]

log = logging.getLogger(__name__)


def active_transform(keyring: Keyring) -> TemplateTransform:
    """The transform of the keyring's active template key (the identity when it has none)."""
    if keyring.active_template_key_id is None:
        log.warning("the keyring has no template key: palm templates are stored without a "
                    "cancelable transform (run `palmpay keys renew-templates`)")
        return IDENTITY
    return transform_for(keyring.active_template_key_id, dict(keyring.template_keys))


def transform_of(vault: CardVault, key_id: str | None) -> TemplateTransform:
    """The transform of ``key_id``, reloading the vault's keyring once if it lacks the key (a
    renewal done by another process); :class:`KeyringError` if the key is gone."""
    try:
        return transform_for(key_id, dict(vault.keyring.template_keys))
    except KeyError:
        pass
    if vault.reload_keyring():
        try:
            return transform_for(key_id, dict(vault.keyring.template_keys))
        except KeyError:
            pass
    raise KeyringError(f"template key {key_id!r} is not in the keyring")


def convert(template: Template, source: TemplateTransform,
            target: TemplateTransform) -> Template:
    """A template stored under ``source`` → the same template under ``target``."""
    if source.key_id == target.key_id:
        return template
    return target.protect(source.reveal(template))


def renew_all(session: Session, vault: CardVault, target: TemplateTransform,
              batch_size: int = DEFAULT_REWRAP_BATCH) -> int:
    """Move every stored template not under ``target`` to it; returns how many were renewed.
    Each renewed template is re-sealed under a fresh data key and checked to open before its
    batch commits."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    total, last_id = 0, ""
    while True:
        stmt = (
            select(PalmTemplate)
            .where(or_(PalmTemplate.transform_id.is_(None),
                       PalmTemplate.transform_id != target.key_id) if target.key_id is not None
                   else PalmTemplate.transform_id.is_not(None),
                   PalmTemplate.id > last_id)
            .order_by(PalmTemplate.id)
            .limit(batch_size)
            .with_for_update()
        )
        rows: Sequence[PalmTemplate] = session.scalars(stmt).all()
        if not rows:
            session.commit()
            break
        try:
            for row in rows:
                vector, code = vault.open_template(row)
                renewed = convert(Template(vector, code), transform_of(vault, row.transform_id),
                                  target)
                env = vault.seal_template(row.id, renewed.vector, renewed.code)
                row.kek_id, row.wrapped_dek = env.kek_id, env.wrapped_dek
                row.nonce, row.ciphertext = env.nonce, env.ciphertext
                row.transform_id = target.key_id
                vault.open_template(row)  # opens under the new envelope
            session.commit()
        except Exception:
            session.rollback()
            log.error("template renewal stopped at %s (batch rolled back)", rows[0].id)
            raise
        last_id = rows[-1].id
        total += len(rows)
        log.info("renewed %d palm templates so far under template key %s", total, target.key_id)
    log.info("template renewal complete: %d templates now under %s", total, target.key_id)
    return total


def template_key_usage(session: Session) -> dict[str | None, int]:
    """Stored templates per template key id (``None``: untransformed)."""
    return {key_id: int(n) for key_id, n in session.execute(
        select(PalmTemplate.transform_id, func.count()).group_by(PalmTemplate.transform_id))}
