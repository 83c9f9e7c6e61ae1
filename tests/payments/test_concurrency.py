"""Races on one payment, both backends: refunds never exceed the capture, a payment is
captured once, a card is enrolled once."""

from __future__ import annotations

import threading
from collections import Counter

from palmpay.payments.errors import PaymentError
from tests.payments.conftest import MASTERCARD, card, make_templates


def _race(n: int, fn) -> Counter:
    barrier = threading.Barrier(n)
    results: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            fn(i)
            outcome = "ok"
        except PaymentError as exc:
            outcome = exc.code
        except Exception as exc:  # noqa: BLE001 - reported in the assertion
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return Counter(results)


def test_concurrent_refunds_never_exceed_capture(service, enroll, acquirer) -> None:
    pay = service.authorize(enroll().id, 1000, "eur")
    outcomes = _race(10, lambda _i: service.refund(pay.id, 300))
    assert outcomes == Counter({"ok": 3, "amount_too_large": 7}), outcomes
    after = service.get_payment(pay.id)
    assert after.amount_refunded == 900 and len(service.list_refunds(pay.id)) == 3
    assert service.check_ledger().ok


def test_concurrent_captures_capture_once(service, enroll) -> None:
    pay = service.authorize(enroll().id, 1000, "eur", capture_method="manual")
    outcomes = _race(6, lambda i: service.capture(pay.id, 100 + i))
    assert outcomes == Counter({"ok": 1, "payment_unexpected_state": 5}), outcomes
    after = service.get_payment(pay.id)
    assert after.status == "succeeded" and 100 <= after.amount_received <= 105
    assert service.check_ledger().ok


def test_concurrent_capture_and_cancel(service, enroll) -> None:
    pay = service.authorize(enroll().id, 1000, "eur", capture_method="manual")
    outcomes = _race(4, lambda i: service.capture(pay.id) if i % 2 else service.cancel(pay.id))
    assert outcomes == Counter({"ok": 1, "payment_unexpected_state": 3}), outcomes
    assert service.get_payment(pay.id).status in ("succeeded", "canceled")
    assert service.check_ledger().ok


def test_concurrent_enrolment_of_one_card(service) -> None:
    outcomes = _race(4, lambda i: service.create_customer(
        f"twin {i}", card(MASTERCARD), make_templates(1, seed=i), consent=True))
    assert outcomes == Counter({"ok": 1, "duplicate_card": 3}), outcomes
