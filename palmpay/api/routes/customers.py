"""Customers: enroll (palm photos + card + consent), read, unenroll.

Every key sees only its merchant's customers (:mod:`palmpay.payments.merchants`): another
merchant's answer 404 ``customer_not_found``, word for word like an id that never existed.
Enrollment refuses a palm already enrolled *at this merchant* (a shopper may enroll at two
merchants, as two customers).

Unenrolling needs proof that the caller is the shopper, not only their customer id (ids are on
every payment response): ``POST /v1/customers/{id}/unenroll`` with frames of the shopper's palm
and the last 4 digits of the enrolled card. The palm must match that customer at the operating
threshold (a search within that one customer) and the digits must be the card's; any mismatch,
or no such customer, answers the same 422 ``verification_failed`` after the same work, and
counts towards the kiosk's lock-out (:data:`palmpay.api.narrowing.UNENROLL`). ``DELETE
/v1/customers/{id}`` is for admin keys only: a store operator acting on a request they verified
themselves. Customer requests count towards ``rate_limit_customers`` per key
(:mod:`palmpay.api.ratelimit`).
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status

from palmpay.api.audited import AdminUnenrollAudit, EnrollAudit, UnenrollAudit
from palmpay.api.deps import (
    AdminKey,
    KioskKey,
    Multipart,
    PalmsDep,
    ServiceDep,
    SettingsDep,
    StateDep,
    merchant_gallery,
    merchant_of,
)
from palmpay.api.images import open_images
from palmpay.api.narrowing import UNENROLL, Lockouts
from palmpay.api.ratelimit import RateLimits
from palmpay.api.replica import enrollment
from palmpay.api.schemas import Name, Text
from palmpay.embed import Template
from palmpay.payments.cards import CardInput, validate_card
from palmpay.payments.errors import PaymentError
from palmpay.payments.states import CustomerStatus
from palmpay.payments.views import CustomerView

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CustomerView)
def create_customer(
    key: KioskKey,
    audit: EnrollAudit,
    _multipart: Annotated[None, Multipart],
    state: StateDep,
    settings: SettingsDep,
    service: ServiceDep,
    palms: PalmsDep,
    name: Annotated[Name, Form(min_length=1, max_length=200)],
    card_number: Annotated[Text, Form(min_length=1, max_length=40,
                                     description="Never echoed or logged.")],
    exp_month: Annotated[int, Form(ge=1, le=12)],
    exp_year: Annotated[int, Form(ge=0, le=9999)],
    images: Annotated[list[UploadFile], File(description="Palm photos, one hand, several "
                                                         "poses (at least enroll_min_samples "
                                                         "usable).")],
    holder_name: Annotated[Text | None, Form(max_length=200)] = None,
    consent: Annotated[Text | None, Form(
        description='Explicit biometric consent: must be "true".')] = None,
    phone_last4: Annotated[str | None, Form(
        pattern="^[0-9]{4}$", description="Last 4 digits of the shopper's phone, stored only "
        "as a keyed hash; asked at checkout in stores past N_safe. A customer enrolled without "
        "them cannot pay there.")] = None,
) -> CustomerView:
    """Enroll a customer of the kiosk's merchant: palm templates from the photos, the card
    tokenised in the vault."""
    merchant = merchant_of(key)
    RateLimits(state.db, settings, state.clock).customers(key.id)
    if consent is None or consent.strip().lower() != "true":
        raise PaymentError("consent_required",
                       'enrollment needs explicit biometric consent: send consent="true"')
    card = CardInput(number=card_number, exp_month=exp_month, exp_year=exp_year,
                     holder_name=holder_name)
    validate_card(card)  # fail fast (invalid_card / expired_card) before any image work
    with open_images(images, "images", settings, minimum=1) as decoded:
        templates = palms.enroll(decoded)
    with enrollment(state, merchant):  # across processes, after catching up with them
        owner, _score = palms.match(templates, merchant_gallery(service, palms, merchant))
        if owner is not None and _active(service, owner, merchant):
            raise PaymentError("palm_already_enrolled",
                           "this palm is already enrolled by another customer")
        customer = service.create_customer(name, card, templates, consent=True,
                                           phone_last4=phone_last4, merchant_id=merchant)
        audit.object_id = customer.id
        # Index after the commit; the database is the source of truth.
        palms.add(customer.id, templates)
    log.info("kiosk %s enrolled customer %s (%d templates)", key.id, customer.id,
             len(templates))
    return customer


def _active(service: ServiceDep, customer_id: str, merchant: str) -> bool:
    try:
        return service.get_customer(customer_id, merchant).status == CustomerStatus.ACTIVE
    except PaymentError:
        return False


@router.get("/{customer_id}", response_model=CustomerView)
def get_customer(key: KioskKey, state: StateDep, service: ServiceDep,
                 customer_id: Text) -> CustomerView:
    """A customer of the key's merchant (active or deleted)."""
    RateLimits(state.db, state.settings, state.clock).customers(key.id)
    return service.get_customer(customer_id, merchant_of(key))


def _proven(service: ServiceDep, palms: PalmsDep, templates: list[Template], customer_id: str,
            card_last4: str, merchant: str) -> bool:
    """Whether the palm and the card digits both prove ``customer_id`` (an active customer of
    ``merchant``). The same work whatever fails: one lookup, one search, one comparison."""
    try:
        customer: CustomerView | None = service.get_customer(customer_id, merchant)
    except PaymentError:
        customer = None
    owner, _score = palms.match(templates, [customer_id])
    last4 = customer.card.last4 if customer is not None else "\0\0\0\0"
    digits = hmac.compare_digest(last4.encode(), card_last4.encode())
    return (customer is not None and customer.status == CustomerStatus.ACTIVE
            and owner == customer_id and digits)


@router.post("/{customer_id}/unenroll", response_model=CustomerView)
def unenroll_customer(
    key: KioskKey,
    audit: UnenrollAudit,
    _multipart: Annotated[None, Multipart],
    state: StateDep,
    settings: SettingsDep,
    service: ServiceDep,
    palms: PalmsDep,
    customer_id: Text,
    frames: Annotated[list[UploadFile], File(description="Camera frames of the shopper's "
                                                         "palm (up to max_images).")],
    card_last4: Annotated[str, Form(pattern="^[0-9]{4}$", description="Last 4 digits of the "
                                    "card the shopper enrolled.")],
) -> CustomerView:
    """Unenroll on the shopper's proof (palm + card digits): palm templates deleted, card
    revoked; the palm no longer pays. Any mismatch: 422 ``verification_failed``."""
    merchant = merchant_of(key)
    RateLimits(state.db, settings, state.clock).customers(key.id)
    audit.object_id = customer_id
    lockouts = Lockouts(state.db, settings, state.clock, UNENROLL)
    lockouts.check(key.id)
    with open_images(frames, "frames", settings, minimum=1) as decoded:
        templates = palms.probe(decoded)
    if not _proven(service, palms, templates, customer_id, card_last4, merchant):
        lockouts.failed(key.id)
        log.info("kiosk %s: unenroll proof for %s refused", key.id, customer_id)
        raise PaymentError("verification_failed", "the palm and the card's last 4 digits do "
                           "not both match this customer")
    lockouts.succeeded(key.id)
    customer = service.delete_customer(customer_id, merchant)
    palms.remove(customer_id)
    log.info("kiosk %s unenrolled customer %s on the shopper's proof", key.id, customer_id)
    return customer


@router.delete("/{customer_id}", response_model=CustomerView)
def delete_customer(key: AdminKey, audit: AdminUnenrollAudit, state: StateDep,
                    service: ServiceDep, palms: PalmsDep, customer_id: Text) -> CustomerView:
    """Unenroll without the shopper's proof (admin keys: a store operator acting on a request
    they verified): palm templates deleted, card revoked; the palm no longer pays."""
    audit.object_id = customer_id
    RateLimits(state.db, state.settings, state.clock).customers(key.id)
    customer = service.delete_customer(customer_id, merchant_of(key))
    palms.remove(customer_id)
    log.info("%s %s unenrolled customer %s", key.scope, key.id, customer_id)
    return customer
