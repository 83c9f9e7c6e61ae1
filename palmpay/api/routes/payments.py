"""Payments: pay by palm (checkout frames), capture, cancel, read.

A terminal key sees only the payments it took (others answer 404 ``payment_not_found``); an
admin key sees all of its merchant's. The palm search covers only the customers of the
terminal's merchant (:mod:`palmpay.payments.merchants`): a shopper enrolled at another merchant
is not recognised.

Abuse controls (:mod:`palmpay.api.ratelimit`, :mod:`palmpay.api.narrowing`): each terminal may
send ``rate_limit_payments`` payments per window (429 ``rate_limited``), and
``unrecognised_max_failures`` unrecognised presentations in a row lock it out (429
``too_many_attempts``), checked before its frames are analysed.

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

from fastapi import APIRouter, Body, File, Form, Response, UploadFile, status

from palmpay.api import telemetry
from palmpay.api.audited import AuthorizeAudit, CancelAudit, CaptureAudit, identified
from palmpay.api.deps import (
    JsonBody,
    Multipart,
    PalmsDep,
    ServiceDep,
    SettingsDep,
    StateDep,
    TerminalKey,
    merchant_gallery,
    merchant_of,
)
from palmpay.api.images import open_images
from palmpay.api.keys import ApiKeyView
from palmpay.api.narrowing import UNRECOGNISED, Lockouts
from palmpay.api.ratelimit import RateLimits
from palmpay.api.schemas import CaptureIn, Text
from palmpay.payments.errors import PaymentError
from palmpay.payments.merchants import owned_by
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


def _payable(service: PaymentService, candidate: str | None, merchant: str
             ) -> CustomerView | None:
    """The candidate if it is an active customer of ``merchant`` who still has palm templates
    (the retention policy may have deleted them while this server holds them in memory); one
    lookup whatever the candidate is (a customer of another merchant is not found, like an
    unknown id)."""
    try:
        customer = service.get_customer(candidate or _NOBODY, merchant)
    except PaymentError:
        return None
    payable = customer.status == CustomerStatus.ACTIVE and customer.templates > 0
    return customer if candidate is not None and payable else None


def visible_payment(service: PaymentService, key: ApiKeyView, payment_id: str) -> PaymentView:
    """The payment if ``key`` may see it (its merchant's, and for a terminal key only those it
    took), else 404 as if it did not exist."""
    payment = service.get_payment(payment_id)
    if not owned_by(payment.merchant, key.merchant) or (
            key.scope != "admin" and payment.terminal != key.id):
        raise PaymentError("payment_not_found", f"no payment {payment_id}",
                           extra={"payment": payment_id})
    return payment


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PaymentView)
def create_payment(
    key: TerminalKey,
    audit: AuthorizeAudit,
    _multipart: Annotated[None, Multipart],
    state: StateDep,
    settings: SettingsDep,
    service: ServiceDep,
    palms: PalmsDep,
    response: Response,
    frames: Annotated[list[UploadFile], File(description="Checkout camera frames of one "
                                                         "presented palm (up to max_images).")],
    amount: Annotated[int, Form(gt=0, description="Minor units (cents).")],
    currency: Annotated[str, Form(min_length=3, max_length=3, pattern="^[A-Za-z]{3}$")],
    capture_method: Annotated[CaptureMethod, Form()] = CaptureMethod.AUTOMATIC,
    phone_last4: Annotated[str | None, Form(
        pattern="^[0-9]{4}$", description="Last 4 digits of the shopper's phone: narrows the "
        "search; required past N_safe (428 narrowing_required without it).")] = None,
) -> PaymentView:
    """Identify the palm in the frames among the terminal's merchant's customers and charge
    the customer's card."""
    merchant = merchant_of(key)
    RateLimits(state.db, settings, state.clock).payments(key.id)
    unrecognised = Lockouts(state.db, settings, state.clock, UNRECOGNISED)
    unrecognised.check(key.id)
    lockouts = Lockouts(state.db, settings, state.clock)
    if phone_last4 is not None:
        lockouts.check(key.id)
    with (open_images(frames, "frames", settings, minimum=1) as decoded,
          telemetry.no_palm_counted(phone_last4 is not None)):
        templates, liveness = palms.probe_live(decoded, settings.liveness != "off")
    shoppers = merchant_gallery(service, palms, merchant)
    if phone_last4 is None:
        if palms.needs_narrowing(shoppers):
            log.info("terminal %s: gallery past N_safe, asking for the phone digits", key.id)
            telemetry.identification("narrowing_required")
            raise PaymentError("narrowing_required", "ask the shopper for the last 4 digits "
                               "of their phone and retry with phone_last4",
                               extra={"narrowing": "phone_last4"})
        candidate, score = palms.match(templates, shoppers)
    else:
        candidate, score = palms.match(templates,
                                       service.customers_with_phone(phone_last4, merchant))
    customer = _payable(service, candidate, merchant)
    telemetry.decision_score(score, phone_last4 is not None, candidate is not None)
    identified(service, key, customer, narrowed=phone_last4 is not None)
    if liveness is not None:
        log.log(logging.WARNING if liveness.attack else logging.INFO,
                "terminal %s: liveness %s", key.id, liveness.describe())
        if liveness.attack and settings.liveness == "enforce":  # after a refusal's work
            unrecognised.failed(key.id)
            if phone_last4 is not None:
                lockouts.failed(key.id)
            telemetry.identification("presentation_attack", phone_last4 is not None)
            raise PaymentError("presentation_attack", "the frames look like a photo, a "
                               "screen or a replayed video, not a live hand",
                               extra={"cues": list(liveness.failed)})
    if customer is None:
        log.info("terminal %s: palm not recognised%s", key.id,
                 " (narrowed)" if phone_last4 is not None else "")
        telemetry.identification("refused_below_threshold" if candidate is None
                                 else "unpayable_candidate", phone_last4 is not None)
        unrecognised.failed(key.id)
        if phone_last4 is not None:
            lockouts.failed(key.id)
        raise _not_recognised()
    unrecognised.succeeded(key.id)
    telemetry.identification("matched", phone_last4 is not None)
    if phone_last4 is not None:
        lockouts.succeeded(key.id)
    try:
        payment = service.authorize(customer.id, amount, currency.lower(), capture_method,
                                    terminal=key.id, merchant_id=merchant)
    except PaymentError as err:
        if err.code in ("customer_deleted", "customer_not_found"):  # deleted meanwhile
            raise _not_recognised() from None
        raise
    audit.object_id, audit.value = payment.id, payment.status
    log.info("terminal %s: payment %s %s (score %.3f)", key.id, payment.id, payment.status,
             score)
    if liveness is not None:
        response.headers["PalmPay-Liveness"] = f"{liveness.decision}; score={liveness.score:.2f}"
    return payment.model_copy(update={"customer_name": customer.name})


@router.get("/{payment_id}", response_model=PaymentView)
def get_payment(key: TerminalKey, service: ServiceDep, payment_id: Text) -> PaymentView:
    return visible_payment(service, key, payment_id)


@router.post("/{payment_id}/capture", response_model=PaymentView)
def capture_payment(
    key: TerminalKey,
    audit: CaptureAudit,
    _json: Annotated[None, JsonBody],
    service: ServiceDep,
    payment_id: Text,
    body: Annotated[CaptureIn | None, Body()] = None,
) -> PaymentView:
    """Capture a ``requires_capture`` payment (all, or ``amount``)."""
    audit.object_id = payment_id
    visible_payment(service, key, payment_id)
    payment = service.capture(payment_id, body.amount if body else None)
    audit.value = payment.status
    return payment


@router.post("/{payment_id}/cancel", response_model=PaymentView)
def cancel_payment(key: TerminalKey, audit: CancelAudit, service: ServiceDep,
                   payment_id: Text) -> PaymentView:
    """Cancel a ``requires_capture`` payment (release the hold)."""
    audit.object_id = payment_id
    visible_payment(service, key, payment_id)
    payment = service.cancel(payment_id)
    audit.value = payment.status
    return payment
