"""Customers: enroll (palm photos + card + consent), read, unenroll."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status

from palmpay.api.deps import KioskKey, Multipart, PalmsDep, ServiceDep, SettingsDep
from palmpay.api.images import read_images
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
    _multipart: Annotated[None, Multipart],
    settings: SettingsDep,
    service: ServiceDep,
    palms: PalmsDep,
    name: Annotated[str, Form(min_length=1, max_length=200)],
    card_number: Annotated[str, Form(min_length=1, max_length=40,
                                     description="Never echoed or logged.")],
    exp_month: Annotated[int, Form(ge=1, le=12)],
    exp_year: Annotated[int, Form(ge=0, le=9999)],
    images: Annotated[list[UploadFile], File(description="Palm photos, one hand, several "
                                                         "poses (at least enroll_min_samples "
                                                         "usable).")],
    holder_name: Annotated[str | None, Form(max_length=200)] = None,
    consent: Annotated[str | None, Form(
        description='Explicit biometric consent: must be "true".')] = None,
    phone_last4: Annotated[str | None, Form(
        pattern="^[0-9]{4}$", description="Last 4 digits of the shopper's phone, stored only "
        "as a keyed hash; asked at checkout in stores past N_safe. A customer enrolled without "
        "them cannot pay there.")] = None,
) -> CustomerView:
    """Enroll a customer: palm templates from the photos, the card tokenised in the vault."""
    if consent is None or consent.strip().lower() != "true":
        raise PaymentError("consent_required",
                       'enrollment needs explicit biometric consent: send consent="true"')
    card = CardInput(number=card_number, exp_month=exp_month, exp_year=exp_year,
                     holder_name=holder_name)
    validate_card(card)  # fail fast (invalid_card / expired_card) before any image work
    decoded = read_images(images, "images", settings, minimum=1)
    templates = palms.enroll(decoded)
    with palms.enrollment():
        owner, _score = palms.match(templates)
        if owner is not None and _active(service, owner):
            raise PaymentError("palm_already_enrolled",
                           "this palm is already enrolled by another customer")
        customer = service.create_customer(name, card, templates, consent=True,
                                           phone_last4=phone_last4)
        # Index after the commit; the database is the source of truth.
        palms.add(customer.id, templates)
    log.info("kiosk %s enrolled customer %s (%d templates)", key.id, customer.id,
             len(templates))
    return customer


def _active(service: ServiceDep, customer_id: str) -> bool:
    try:
        return service.get_customer(customer_id).status == CustomerStatus.ACTIVE
    except PaymentError:
        return False


@router.get("/{customer_id}", response_model=CustomerView)
def get_customer(key: KioskKey, service: ServiceDep, customer_id: str) -> CustomerView:
    """A customer (active or deleted)."""
    return service.get_customer(customer_id)


@router.delete("/{customer_id}", response_model=CustomerView)
def delete_customer(key: KioskKey, service: ServiceDep, palms: PalmsDep,
                    customer_id: str) -> CustomerView:
    """Unenroll: palm templates deleted, card revoked; the palm no longer pays."""
    customer = service.delete_customer(customer_id)
    palms.remove(customer_id)
    log.info("%s %s unenrolled customer %s", key.scope, key.id, customer_id)
    return customer
