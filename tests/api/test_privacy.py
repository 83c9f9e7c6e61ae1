"""Biometric privacy over the API: cancelable templates survive a key renewal (enroll, renew,
the palm still pays, before and after a restart), every biometric and payment operation is in
the audit log (with no card number and no template), and the retention policy stops an
inactive customer's palm from paying."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlalchemy import select, update

from palmpay.db import utcnow
from palmpay.payments import admin
from palmpay.payments.audit import AuditAction, AuditLog
from palmpay.payments.models import AuditEvent, Customer, PalmTemplate
from palmpay.payments.renewal import template_key_usage
from tests.api.conftest import CARDS, assert_problem
from tests.pan_scan import find_pans


def _stored(api) -> dict[str, bytes]:
    with api.state.db.session(readonly=True) as s:
        return {r.id: r.ciphertext for r in s.scalars(select(PalmTemplate))}


def test_enroll_renew_templates_and_the_palm_still_pays(api_factory) -> None:
    api = api_factory()
    r = api.enroll("ann")
    assert r.status_code == 201, r.text
    ann = r.json()["id"]
    old_key = api.state.service.template_transform.key_id
    assert old_key is not None and old_key.startswith("tfk_")
    before = _stored(api)

    new_key, count = admin.renew_templates(api.settings)
    assert new_key != old_key and count == len(before)
    with api.state.db.session(readonly=True) as s:
        assert template_key_usage(s) == {new_key: count}
    assert all(_stored(api)[i] != c for i, c in before.items())  # every template renewed
    # The running server (index under the old key) still recognises the palm ...
    paid = api.pay("ann")
    assert paid.status_code == 201, paid.text
    assert paid.json()["customer"] == ann
    # ... and so does a restarted one, which rebuilds its index under the new key.
    restarted = api_factory()
    assert restarted.state.service.template_transform.key_id == new_key
    restarted.keys = api.keys
    paid = restarted.pay("ann")
    assert paid.status_code == 201, paid.text
    assert paid.json()["customer"] == ann
    assert_problem(restarted.pay("stranger"), 422, "palm_not_recognised")


def test_every_operation_is_audited_without_pan_or_template(api) -> None:
    r = api.enroll("bob", card="mastercard")
    assert r.status_code == 201, r.text
    bob = r.json()["id"]
    auto = api.pay("bob")
    manual = api.pay("bob", capture_method="manual")
    held = api.pay("bob", capture_method="manual")
    assert {auto.status_code, manual.status_code, held.status_code} == {201}, auto.text
    auto_id, manual_id, held_id = auto.json()["id"], manual.json()["id"], held.json()["id"]
    terminal = api.auth("terminal")
    assert api.client.post(f"/v1/payments/{manual_id}/capture", headers=terminal).status_code \
        == 200
    assert api.client.post(f"/v1/payments/{held_id}/cancel", headers=terminal).status_code == 200
    refund = api.client.post("/v1/refunds", json={"payment": auto_id, "amount": 100},
                             headers=terminal)
    assert refund.status_code == 201, refund.text
    assert_problem(api.pay("stranger"), 422, "palm_not_recognised")
    assert_problem(api.enroll("bob", card="visa"), 409, "palm_already_enrolled")
    r = api.client.delete(f"/v1/customers/{bob}", headers=api.auth("admin"))
    assert r.status_code == 200, r.text

    events = AuditLog(api.state.db).events()
    seen = [(e.action, e.object_id, e.outcome) for e in events]
    assert (AuditAction.ENROLL, bob, "ok") in seen
    assert (AuditAction.ENROLL, None, "palm_already_enrolled") in seen
    assert (AuditAction.IDENTIFY, bob, "match") in seen
    assert (AuditAction.IDENTIFY, None, "no_match") in seen
    assert (AuditAction.AUTHORIZE, auto_id, "succeeded") in seen
    assert (AuditAction.AUTHORIZE, manual_id, "requires_capture") in seen
    assert (AuditAction.AUTHORIZE, None, "palm_not_recognised") in seen
    assert (AuditAction.CAPTURE, manual_id, "succeeded") in seen
    assert (AuditAction.CANCEL, held_id, "canceled") in seen
    assert (AuditAction.REFUND, auto_id, "succeeded") in seen
    assert (AuditAction.UNENROLL, bob, "ok") in seen
    key_ids = {e.actor for e in events}
    assert key_ids and all(k.startswith("key_") for k in key_ids), key_ids
    # No card number and no template bytes anywhere in the table.
    with api.state.db.session(readonly=True) as s:
        rows = s.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.object_id,
                                AuditEvent.outcome, AuditEvent.created_at)).all()
    blob = "\n".join(" ".join(str(v) for v in row) for row in rows)
    assert not find_pans(blob) and CARDS["mastercard"] not in blob and CARDS["visa"] not in blob
    codes = [np.asarray(t.code).tobytes() for t in api.state.palms.recognizer.index._codes.values()]
    assert all(c.hex()[:24] not in blob.lower() for c in codes)
    assert all(len(str(v)) <= 64 for row in rows for v in row[:4] if v is not None)


def test_retention_stops_an_inactive_palm_from_paying(api_factory) -> None:
    api = api_factory()
    r = api.enroll("cat", card="amex")
    assert r.status_code == 201, r.text
    cat = r.json()["id"]
    assert api.pay("cat").status_code == 201
    # The clock: 37 months later, with no activity since.
    later = utcnow() + timedelta(days=37 * 31)
    assert admin.retention(api.settings, later, dry_run=True).customers == (cat,)
    report = admin.retention(api.settings, later)
    assert report.customers == (cat,) and report.templates_deleted >= 3
    with api.state.db.session(readonly=True) as s:
        assert s.get(Customer, cat).templates_purged_at is not None
    # The running server still holds the templates in memory, but the palm no longer pays.
    assert_problem(api.pay("cat"), 422, "palm_not_recognised")
    restarted = api_factory()
    restarted.keys = api.keys
    assert restarted.state.palms.customers == 0
    assert_problem(restarted.pay("cat"), 422, "palm_not_recognised")
    actions = [(e.action, e.object_id) for e in AuditLog(api.state.db).events()]
    assert (AuditAction.TEMPLATES_PURGED, cat) in actions
    assert (AuditAction.RETENTION, None) in actions


def test_retention_at_start_up(api_factory) -> None:
    api = api_factory()
    assert api.enroll("dan", card="discover").status_code == 201
    with api.state.db.session() as s:  # enrolled 40 months ago
        long_ago = utcnow() - timedelta(days=40 * 31)
        s.execute(update(Customer).values(created_at=long_ago))
        s.execute(update(PalmTemplate).values(created_at=long_ago))
    restarted = api_factory(retention_on_start=True)
    assert restarted.state.palms.customers == 0
    with restarted.state.db.session(readonly=True) as s:
        assert all(c.templates_purged_at is not None for c in s.scalars(select(Customer)))
    assert [e.actor for e in AuditLog(api.state.db).events(action=AuditAction.RETENTION)] == [
        "system"]
