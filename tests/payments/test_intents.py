"""Authorisation intents and their reconciliation; the simulated acquirer's reference and journal.

An intent "left open by a dead process" is made here the way a crash leaves it: the intent
committed by an instance that is now stopped, the acquirer called (or not) with its reference,
nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from palmpay.db import new_id, utcnow
from palmpay.payments.instances import InstanceRegistry
from palmpay.payments.intents import record_intent
from palmpay.payments.models import AuthorizationIntent, Customer, Payment, ServiceInstance
from palmpay.payments.processor import ProcessorError, SimulatedAcquirer
from tests.payments.conftest import EXP_YEAR, MASTERCARD, VISA


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self):
        return utcnow() + self.offset


def _instance(db, *, host: str = "elsewhere", stopped: bool = False, lease_s: float = 60,
              pid: int = 1) -> str:
    now = utcnow()
    owner = new_id("ins")
    with db.session() as s:
        s.add(ServiceInstance(id=owner, hostname=host, pid=pid, started_at=now, heartbeat_at=now,
                              lease_expires_at=now + timedelta(seconds=lease_s),
                              stopped_at=now if stopped else None))
    return owner


@pytest.fixture
def registry(service, db):
    clock = Clock()
    service.instances = InstanceRegistry(db, 5.0, clock)
    service.instances.register()
    service.instances.clock_ = clock
    return service.instances


def leave_open(service, db, customer_id: str, amount: int, owner: str, *, authorise: bool,
               capture: bool = False, method: str = "automatic") -> str:
    payment_id = new_id("pay")
    with db.session() as s:
        card = s.get(Customer, customer_id).card
        record_intent(s, payment_id, card, amount, "eur", method, None, owner)
    if authorise:
        with service.vault.reveal(card) as pan:
            auth = service.processor.authorize(pan, 12, EXP_YEAR, amount, "eur",
                                               reference=payment_id)
        if capture:
            service.processor.capture(auth.auth_code, amount)
    return payment_id


def _state(db, intent_id: str) -> str:
    with db.session(readonly=True) as s:
        return s.get(AuthorizationIntent, intent_id).state


def _payments(db) -> int:
    with db.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(Payment))


@pytest.mark.parametrize(("method", "capture", "status"), [
    ("automatic", True, "succeeded"),   # died after the capture
    ("automatic", False, "succeeded"),  # died between authorisation and capture: captured now
    ("manual", False, "requires_capture"),
])
def test_an_authorised_intent_of_a_dead_owner_becomes_its_payment(
        service, db, enroll, acquirer, registry, events, method, capture, status) -> None:
    cus = enroll(VISA)
    dead = _instance(db, stopped=True)
    pid = leave_open(service, db, cus.id, 700, dead, authorise=True, capture=capture,
                     method=method)
    report = service.reconciler().reconcile()
    assert (report.completed, report.voided, report.left_open) == (1, 0, 0)
    payment = service.get_payment(pid)
    assert payment.status == status and payment.amount == 700
    assert _state(db, pid) == "completed"
    assert acquirer.outstanding(VISA) == 700  # one hold, no second authorisation
    assert service.check_ledger().ok
    assert events[-1][0] == f"payment.{status}"
    assert service.reconciler().reconcile().completed == 0  # settled once


def test_an_intent_the_acquirer_never_saw_is_voided(service, db, enroll, acquirer,
                                                    registry) -> None:
    cus = enroll(VISA)
    pid = leave_open(service, db, cus.id, 500, _instance(db, stopped=True), authorise=False)
    assert service.reconciler().reconcile().voided == 1
    assert _state(db, pid) == "voided" and _payments(db) == 0
    assert acquirer.outstanding(VISA) == 0
    assert service.check_ledger().ok


def test_a_live_owner_is_left_alone_until_its_lease_expires(service, db, enroll,
                                                            registry) -> None:
    cus = enroll(VISA)
    owner = _instance(db, lease_s=30)  # another host, lease running
    pid = leave_open(service, db, cus.id, 300, owner, authorise=True, capture=True)
    assert service.reconciler().reconcile().left_open == 1
    assert _state(db, pid) == "open"
    registry.clock_.offset = timedelta(seconds=31)
    assert service.reconciler().reconcile().completed == 1
    assert service.get_payment(pid).status == "succeeded"


def test_liveness_rule(db, service, registry) -> None:
    since = utcnow()
    assert registry.alive(registry.id, since)
    assert not registry.alive(_instance(db, stopped=True), since)
    assert registry.alive(_instance(db, lease_s=30), since)
    assert not registry.alive(_instance(db, lease_s=-1), since)
    # This host, a pid that is gone (or this very process under another id): dead at once,
    # lease or not; a live pid on this host keeps its lease.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = registry.hostname
    assert not registry.alive(_instance(db, host=here, lease_s=30, pid=gone.pid), since)
    assert not registry.alive(_instance(db, host=here, lease_s=30, pid=os.getpid()), since)
    assert registry.alive(_instance(db, host=here, lease_s=30, pid=os.getppid()), since)
    unknown = new_id("ins")
    assert registry.alive(unknown, since)  # never registered: trusted for one lease
    assert not registry.alive(unknown, since - timedelta(seconds=6))


def test_authorize_completes_its_intent_and_a_failure_voids_it(service, db, enroll, acquirer,
                                                               monkeypatch) -> None:
    cus = enroll(MASTERCARD)
    pay = service.authorize(cus.id, 400, "eur")
    assert _state(db, pay.id) == "completed"
    assert acquirer.lookup(pay.id).captured == 400

    def fail(*_a, **_k):
        raise ProcessorError("acquirer timeout")

    monkeypatch.setattr(acquirer, "capture", fail)
    with pytest.raises(Exception) as exc:
        service.authorize(cus.id, 250, "eur")
    assert getattr(exc.value, "code", None) == "processor_error"
    with db.session(readonly=True) as s:
        states = sorted(s.scalars(select(AuthorizationIntent.state)))
    assert states == ["completed", "voided"]
    assert acquirer.outstanding(MASTERCARD) == 400  # the failed one's hold was released
    assert service.check_ledger().ok


def test_the_acquirer_authorises_a_reference_once_and_remembers_it(tmp_path) -> None:
    journal = tmp_path / "acq.sqlite3"
    acq = SimulatedAcquirer(card_limit=1000, journal=journal)
    first = acq.authorize(VISA, 12, EXP_YEAR, 600, "eur", reference="pay_x")
    again = acq.authorize(VISA, 12, EXP_YEAR, 600, "eur", reference="pay_x")
    assert first.approved and again.auth_code == first.auth_code
    assert acq.outstanding(VISA) == 600
    acq.capture(first.auth_code, 600)
    acq.close()
    restarted = SimulatedAcquirer(card_limit=1000, journal=journal)  # a new process
    record = restarted.lookup("pay_x")
    assert record is not None and (record.amount, record.captured, record.voided) == (
        600, 600, False)
    assert restarted.outstanding(VISA) == 600
    assert not restarted.authorize(VISA, 12, EXP_YEAR, 600, "eur").approved  # limit holds
    assert restarted.lookup("pay_unknown") is None
