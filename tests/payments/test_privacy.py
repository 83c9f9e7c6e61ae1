"""Biometric privacy in the payments core: cancelable templates (exact scores, unlinkable across
keys, renewable without re-enrolment), the append-only audit log (no card number, no template)
and the retention policy (inactive customers' templates deleted, with a clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from palmpay.config import Settings
from palmpay.embed import Template
from palmpay.match import code_scores
from palmpay.payments import admin
from palmpay.payments.audit import AuditAction, AuditLog, record
from palmpay.payments.cancelable import TemplateTransform
from palmpay.payments.keys import KeyringError, generate_keyring, read_keyring_file
from palmpay.payments.models import AuditEvent, Customer, PalmTemplate, Payment
from palmpay.payments.retention import apply_retention, months_before
from palmpay.payments.service import PaymentService
from palmpay.payments.vault import CardVault
from tests.pan_scan import find_pans
from tests.payments.conftest import ALL_PANS, VISA, make_templates


def _transform(seed: int) -> TemplateTransform:
    return TemplateTransform(f"tfk_test{seed}", np.random.default_rng(seed).bytes(32))


def test_transform_keeps_every_score_and_inverts() -> None:
    t = _transform(1)
    gallery = make_templates(6, seed=3)
    probes = make_templates(5, seed=4) + [gallery[2]]
    clear_codes = np.stack([g.code for g in gallery])
    stored = [t.protect(g) for g in gallery]
    stored_codes = np.stack([s.code for s in stored])
    mask = t.code_mask(clear_codes.shape[1])
    assert not np.array_equal(stored_codes, clear_codes)
    for n in (1, 6):  # the popcount path (few probes) and the BLAS path
        p = np.stack([x.code for x in probes[-n:]])
        assert np.array_equal(code_scores(p, stored_codes, mask=mask),
                              code_scores(p, clear_codes))
    cos_clear = np.stack([g.vector for g in gallery]) @ probes[0].vector
    cos_t = np.stack([s.vector for s in stored]) @ t.probe(probes[0]).vector
    assert np.allclose(cos_t, cos_clear, atol=1e-5)
    back = t.reveal(stored[0])
    assert np.array_equal(back.code, gallery[0].code)
    assert np.allclose(back.vector, gallery[0].vector, atol=1e-6)


def test_templates_under_two_keys_do_not_link() -> None:
    """The same palms under keys A and B: the code scores of a template against its own copy
    are no higher than against any other palm's (≈ 0.5: chance)."""
    a, b = _transform(1), _transform(2)
    palms = make_templates(8, seed=5)
    codes_a = np.stack([a.protect(p).code for p in palms])
    codes_b = np.stack([b.protect(p).code for p in palms])
    scores = code_scores(codes_a, codes_b)
    assert np.all(np.abs(scores - 0.5) < 0.06)
    assert not np.any(np.diag(scores) >= 0.9)


def test_keyring_carries_template_keys_through_rotation_and_json() -> None:
    keyring = generate_keyring()
    assert keyring.active_template_key_id and keyring.active_template_key_id.startswith("tfk_")
    renewed = keyring.with_new_kek().with_new_template_key()
    assert set(renewed.template_keys) > set(keyring.template_keys)
    parsed = type(keyring).from_json(renewed.to_json())
    assert dict(parsed.template_keys) == dict(renewed.template_keys)
    assert parsed.active_template_key_id == renewed.active_template_key_id
    assert str(keyring.template_keys[keyring.active_template_key_id][:4]) not in repr(renewed)
    with pytest.raises(KeyringError):
        renewed.without_template_key(renewed.active_template_key_id)


def test_stored_templates_are_transformed(db, service: PaymentService, enroll) -> None:
    cus = enroll(VISA, n_templates=2)
    clear = make_templates(2, seed=0)  # what enroll() stored
    with db.session(readonly=True) as s:
        rows = s.scalars(select(PalmTemplate).where(PalmTemplate.customer_id == cus.id)).all()
        assert {r.transform_id for r in rows} == {service.template_transform.key_id}
        opened = [service.vault.open_template(r) for r in rows]
    clear_codes = {c.code.tobytes() for c in clear}
    assert all(code.tobytes() not in clear_codes for _, code in opened)


def test_renewal_changes_every_template_and_keeps_matching(db_url, db, keyring_path, vault,
                                                           enroll) -> None:
    settings = Settings(database_url=db_url, keyring_file=keyring_path)
    service = PaymentService(db, vault, None)  # type: ignore[arg-type]
    ann = enroll(VISA, n_templates=3)
    old = service.template_transform
    before = dict((t.code.tobytes(), who) for who, t in service.templates())
    key_id, count = admin.renew_templates(settings)
    assert count == 3 and key_id != old.key_id
    fresh = PaymentService(db, CardVault(read_keyring_file(keyring_path)), None)  # type: ignore[arg-type]
    assert fresh.template_transform.key_id == key_id
    after = list(fresh.templates())
    assert all(t.code.tobytes() not in before for _, t in after)
    # The same palm still matches exactly: the probe (in clear) against the renewed codes.
    probe = make_templates(3, seed=0)[1]
    mask = fresh.template_transform.code_mask(probe.code.size)
    scores = code_scores(probe.code, np.stack([t.code for _, t in after]), mask=mask)
    assert scores.max() == 1.0 and {who for who, _ in after} == {ann.id}
    # The old server's view still converts the renewed rows to its own transform.
    assert {t.code.tobytes() for _, t in service.templates()} == set(before)
    # Idempotent; the old key can be retired once unused; the active one cannot.
    assert admin.renew_templates(settings, new_key=False) == (key_id, 0)
    admin.retire_key(settings, old.key_id)
    assert old.key_id not in read_keyring_file(keyring_path).template_keys
    with pytest.raises(KeyringError, match="active"):
        admin.retire_key(settings, key_id)
    actions = [e.action for e in AuditLog(db).events()]
    assert actions.count(AuditAction.TEMPLATES_RENEW) == 2 and AuditAction.KEY_RETIRE in actions


def test_legacy_clear_templates_are_renewed(db_url, db, keyring_path, vault, enroll) -> None:
    """Templates stored before migration 0006 (transform_id NULL, in clear) are moved under the
    active key by the renewal, and read correctly before it."""
    cus = enroll(VISA, n_templates=1)
    clear = make_templates(1, seed=0)[0]
    with db.session() as s:
        row = s.scalars(select(PalmTemplate).where(PalmTemplate.customer_id == cus.id)).one()
        env = vault.seal_template(row.id, clear.vector, clear.code)
        row.kek_id, row.wrapped_dek, row.nonce, row.ciphertext = (
            env.kek_id, env.wrapped_dek, env.nonce, env.ciphertext)
        row.transform_id = None
    service = PaymentService(db, vault, None)  # type: ignore[arg-type]
    [(_, t)] = list(service.templates())
    assert np.array_equal(t.code, service.template_transform.protect(clear).code)
    settings = Settings(database_url=db_url, keyring_file=keyring_path)
    _, count = admin.renew_templates(settings, new_key=False)
    assert count == 1


def test_audit_log_is_append_only_and_holds_no_pan_or_template(db, service, enroll) -> None:
    audit = AuditLog(db)
    cus = enroll(VISA, n_templates=2)
    audit.record("key_abc", AuditAction.ENROLL, cus.id, "ok")
    audit.record("key_abc", AuditAction.UNENROLL, VISA, "ok")  # a PAN typed as an id
    with pytest.raises(ValueError), db.session() as s:  # a card number as an outcome
        record(s, "key_abc", AuditAction.AUTHORIZE, None, VISA)
    audit.record("key_abc", AuditAction.AUTHORIZE, None, f"x{VISA}")  # refused, logged
    events = audit.events()
    assert [e.object_id for e in events] == [cus.id, "invalid_id"]
    _assert_no_pan_or_template(db, service)
    with pytest.raises(DBAPIError, match="append-only"), db.session() as s:
        s.execute(update(AuditEvent).values(outcome="x"))
    with pytest.raises(DBAPIError, match="append-only"), db.session() as s:
        s.execute(text("DELETE FROM audit_events"))


def _assert_no_pan_or_template(db, service: PaymentService) -> None:
    """Every audit value is a short string with no card number and no template bytes."""
    with db.session(readonly=True) as s:
        rows = s.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.object_id,
                                AuditEvent.outcome)).all()
    templates = [t for _, t in service.templates()]
    for row in rows:
        blob = " ".join(str(v) for v in row)
        assert not find_pans(blob) and not any(p in blob for p in ALL_PANS), row
        assert all(v is None or (isinstance(v, str) and len(v) <= 64) for v in row), row
        for t in templates:
            assert t.code.tobytes().hex()[:32] not in blob


def test_retention_deletes_inactive_templates_with_a_clock(db, service, enroll) -> None:
    now = datetime(2031, 6, 15, 12, tzinfo=UTC)
    assert months_before(now, 36) == datetime(2028, 6, 15, 12, tzinfo=UTC)
    assert months_before(datetime(2031, 3, 31, tzinfo=UTC), 1) == datetime(2031, 2, 28, tzinfo=UTC)
    idle = enroll(VISA, n_templates=2)
    payer = enroll("5555555555554444", n_templates=2)
    fresh = enroll("378282246310005", n_templates=1)
    pay = service.authorize(payer.id, 500, "eur")
    long_ago, recently = now - timedelta(days=40 * 31), now - timedelta(days=30)
    with db.session() as s:  # the clock: enrolled 40 months before `now`, one paid last month
        for cid in (idle.id, payer.id):
            s.execute(update(Customer).where(Customer.id == cid).values(created_at=long_ago))
            s.execute(update(PalmTemplate).where(PalmTemplate.customer_id == cid)
                      .values(created_at=long_ago))
        s.execute(update(Payment).where(Payment.id == pay.id).values(created_at=recently))
        s.execute(update(Customer).where(Customer.id == fresh.id).values(created_at=recently))
        s.execute(update(PalmTemplate).where(PalmTemplate.customer_id == fresh.id)
                  .values(created_at=recently))
    dry = apply_retention(db, now, 36, dry_run=True)
    assert dry.customers == (idle.id,) and service.get_customer(idle.id).templates == 2
    report = apply_retention(db, now, 36)
    assert report.customers == (idle.id,) and report.templates_deleted == 2
    assert service.get_customer(idle.id).templates == 0
    assert service.get_customer(payer.id).templates == 2
    assert service.get_customer(fresh.id).templates == 1
    with db.session(readonly=True) as s:
        assert s.get(Customer, idle.id).templates_purged_at == now
    assert {who for who, _ in service.templates()} == {payer.id, fresh.id}
    events = AuditLog(db).events()
    assert [(e.action, e.object_id) for e in events] == [
        (AuditAction.TEMPLATES_PURGED, idle.id), (AuditAction.RETENTION, None)]
    assert events[-1].outcome == "purged_1"
    # A later run finds nobody new; re-enrolling clears the mark.
    assert apply_retention(db, now, 36).customers == ()
    service.add_templates(idle.id, [Template(*_one())])
    with db.session(readonly=True) as s:
        assert s.get(Customer, idle.id).templates_purged_at is None


def _one() -> tuple[np.ndarray, np.ndarray]:
    t = make_templates(1, seed=42)[0]
    return t.vector, t.code
