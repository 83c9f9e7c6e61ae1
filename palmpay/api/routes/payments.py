"""Payments: pay by palm (checkout frames), capture, cancel, read.

A terminal key sees only the payments it took (others answer 404 ``payment_not_found``); an
admin key sees all.

"Not recognised" is one answer whatever the reason — no enrolled palm reaches the threshold, or
the best palm belongs to a customer that was deleted in the meantime — with the same status,
the same body shape and the same work (one customer lookup in both cases), so a caller cannot
tell an unknown palm from an unenrolled customer.

Past N_safe (``GET /v1/status``), the palm alone may not search the whole gallery: a payment
without ``phone_last4`` answers 428 ``narrowing_required`` after its frames were analysed, and
the terminal retries with the same frames, the shopper's last 4 phone digits and a new
Idempotency-Key. The search then covers only the customers enrolled with those digits, at the
threshold for that many samples. Wrong digits answer the same ``palm_not_recognised`` as an
unknown palm, after the same analysis and a search as well; they count towards the terminal's
lock-out (:mod:`palmpay.api.narrowing`), as does any narrowed payment that is not recognised.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, File, Form, UploadFile, status

from palmpay.api.deps import (
    JsonBody,
    Multipart,
    PalmsDep,
    ServiceDep,
    SettingsDep,
    StateDep,
    TerminalKey,
)
from palmpay.api.images import read_images
from palmpay.api.keys import ApiKeyView
from palmpay.api.narrowing import Lockouts
from palmpay.api.schemas import CaptureIn
from palmpay.payments.errors import PaymentError
from palmpay.payments.service import PaymentService
from palmpay.payments.states import CaptureMethod, CustomerStatus
from palmpay.payments.views import CustomerView, PaymentView

__all__ = ["router", "visible_payment"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/payments", tags=["payments"])

#: Looked up when no palm matched, so both "not recognised" paths do one customer lookup.
_NOBODY = "cus_" + "0" * 24


def _not_recognised() -> PaymentError:
    return PaymentError("palm_not_recognised", "the palm does not match any enrolled customer")


def _payable(service: PaymentService, candidate: str | None) -> CustomerView | None:
    """The candidate if it is an active customer; one lookup whatever the candidate is."""
    try:
        customer = service.get_customer(candidate or _NOBODY)
    except PaymentError:
        return None
    return customer if candidate is not None and customer.status == CustomerStatus.ACTIVE else None


def visible_payment(service: PaymentService, key: ApiKeyView, payment_id: str) -> PaymentView:
    """The payment if ``key`` may see it (its own terminal's, or any for admin), else 404."""
    payment = service.get_payment(payment_id)
    if key.scope != "admin" and payment.terminal != key.id:
        raise PaymentError("payment_not_found", f"no payment {payment_id}",
                           extra={"payment": payment_id})
    return payment


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PaymentView)
def create_payment(
    key: TerminalKey,
    _multipart: Annotated[None, Multipart],
    state: StateDep,
    settings: SettingsDep,
    service: ServiceDep,
    palms: PalmsDep,
    frames: Annotated[list[UploadFile], File(description="Checkout camera frames of one "
                                                         "presented palm (up to max_images).")],
    amount: Annotated[int, Form(gt=0, description="Minor units (cents).")],
    currency: Annotated[str, Form(min_length=3, max_length=3, pattern="^[A-Za-z]{3}$")],
    capture_method: Annotated[CaptureMethod, Form()] = CaptureMethod.AUTOMATIC,
    phone_last4: Annotated[str | None, Form(
        pattern="^[0-9]{4}$", description="Last 4 digits of the shopper's phone: narrows the "
        "search; required past N_safe (428 narrowing_required without it).")] = None,
) -> PaymentView:
    """Identify the palm in the frames and charge the customer's card."""
    lockouts = Lockouts(state.db, settings, state.clock)
    if phone_last4 is not None:
        lockouts.check(key.id)
    decoded = read_images(frames, "frames", settings, minimum=1)
    templates = palms.probe(decoded)
    if phone_last4 is None:
        if palms.needs_narrowing():
            log.info("terminal %s: gallery past N_safe, asking for the phone digits", key.id)
            raise PaymentError("narrowing_required", "ask the shopper for the last 4 digits "
                               "of their phone and retry with phone_last4",
                               extra={"narrowing": "phone_last4"})
        candidate, score = palms.match(templates)
    else:
        candidate, score = palms.match(templates, service.customers_with_phone(phone_last4))
    customer = _payable(service, candidate)
    if customer is None:
        log.info("terminal %s: palm not recognised%s", key.id,
                 " (narrowed)" if phone_last4 is not None else "")
        if phone_last4 is not None:
            lockouts.failed(key.id)
        raise _not_recognised()
    if phone_last4 is not None:
        lockouts.succeeded(key.id)
    try:
        payment = service.authorize(customer.id, amount, currency.lower(), capture_method,
                                    terminal=key.id)
    except PaymentError as err:
        if err.code in ("customer_deleted", "customer_not_found"):  # deleted meanwhile
            raise _not_recognised() from None
        raise
    log.info("terminal %s: payment %s %s (score %.3f)", key.id, payment.id, payment.status,
             score)
    return payment.model_copy(update={"customer_name": customer.name})


@router.get("/{payment_id}", response_model=PaymentView)
def get_payment(key: TerminalKey, service: ServiceDep, payment_id: str) -> PaymentView:
    return visible_payment(service, key, payment_id)


@router.post("/{payment_id}/capture", response_model=PaymentView)
def capture_payment(
    key: TerminalKey,
    _json: Annotated[None, JsonBody],
    service: ServiceDep,
    payment_id: str,
    body: Annotated[CaptureIn | None, Body()] = None,
) -> PaymentView:
    """Capture a ``requires_capture`` payment (all, or ``amount``)."""
    visible_payment(service, key, payment_id)
    return service.capture(payment_id, body.amount if body else None)


@router.post("/{payment_id}/cancel", response_model=PaymentView)
def cancel_payment(key: TerminalKey, service: ServiceDep, payment_id: str) -> PaymentView:
    """Cancel a ``requires_capture`` payment (release the hold)."""
    visible_payment(service, key, payment_id)
    return service.cancel(payment_id)
