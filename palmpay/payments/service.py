"""The payment service: enrol and unenrol customers, authorise/capture/cancel/refund payments.

This is the interface the HTTP API (``palmpay/api``) codes against. :class:`PaymentService`
joins :class:`~palmpay.payments.customers.CustomerOperations` and
:class:`~palmpay.payments.payments.PaymentOperations` (values checked by
:mod:`palmpay.payments.validation`). Every method runs in its own database transaction and
returns frozen views (:mod:`palmpay.payments.views`, never ORM rows); failures the caller can
act on are :class:`~palmpay.payments.errors.PaymentError` with a stable ``code`` (its HTTP
status is in :data:`palmpay.api.errors.CATALOGUE`).

Payment lifecycle (``status``)::

    authorize(capture_method="automatic") ─approved─▶ succeeded ─refund()*─▶ succeeded
    authorize(capture_method="manual")    ─approved─▶ requires_capture
                                                       ├─ capture(amount ≤ authorised) ─▶ succeeded
                                                       └─ cancel() ────────────────────▶ canceled
    authorize(...) ──declined──▶ failed  (and PaymentError card_declined|insufficient_funds|
                                          expired_card with extra={"payment": id})

Any other transition raises ``payment_unexpected_state``. Capture happens at most once
(a partial capture releases the rest). Refunds may be partial and repeated; their sum never
exceeds the captured amount (``amount_too_large``). A refunded payment keeps status
``succeeded`` with ``amount_refunded`` set.

Concurrency: every state change re-reads its payment (or customer) row locked — ``SELECT ...
FOR UPDATE`` on PostgreSQL; on SQLite the transaction starts with ``BEGIN IMMEDIATE``, so
writers run one at a time (see :mod:`palmpay.db`) — and checks the amounts inside that lock, so
two captures or refunds racing on one payment cannot over-capture or over-refund. The acquirer is
called inside the transaction; if the transaction then fails to commit, the service undoes the
acquirer side (void or refund) and logs it.

Events: ``on_event(type, object, merchant)`` is called after the commit with one of
``customer.created``, ``customer.deleted``, ``payment.succeeded``, ``payment.requires_capture``,
``payment.canceled``, ``payment.failed``, ``refund.created``; ``object`` is the view's
``to_dict()``, the API's JSON form of the object (Unix-second timestamps, an ``"object"`` member
naming the type), and ``merchant`` the id of the merchant that owns it. An exception raised by
``on_event`` is logged, never propagated (the change is already committed).
"""

from __future__ import annotations

import logging

from palmpay.config import Settings, get_settings
from palmpay.db import open_database
from palmpay.payments.core import EventHandler
from palmpay.payments.customers import CustomerOperations
from palmpay.payments.keys import load_keyring
from palmpay.payments.payments import PaymentOperations
from palmpay.payments.processor import Processor, SimulatedAcquirer
from palmpay.payments.vault import CardVault
from palmpay.payments.views import CardView, CustomerView, PaymentView, RefundView

__all__ = [
    "CardView",
    "CustomerView",
    "EventHandler",
    "PaymentService",
    "PaymentView",
    "RefundView",
    "build_service",
]

log = logging.getLogger(__name__)


class PaymentService(CustomerOperations, PaymentOperations):
    """Customers, cards and payments over a :class:`~palmpay.db.Database`.

    :param db: the database (migrated: see :func:`palmpay.db.upgrade`).
    :param vault: encrypts card numbers and palm templates.
    :param processor: the acquirer (:class:`~palmpay.payments.processor.SimulatedAcquirer` in
        the demo and tests).
    :param on_event: called after each commit with ``(type, object_dict, merchant_id)`` (module
        docstring).
    :param max_amount: largest amount one payment may authorise, in minor units
        (``PALMPAY_MAX_PAYMENT_AMOUNT``); above it ``amount_too_large``.
    """


def build_service(
    settings: Settings | None = None,
    *,
    on_event: EventHandler | None = None,
    processor: Processor | None = None,
) -> PaymentService:
    """The service from settings: keyring loaded first (fails fast with a clear
    :class:`~palmpay.payments.keys.KeyringError` when none is configured), then the engine
    (``PALMPAY_DATABASE_URL`` or SQLite under ``PALMPAY_DATA_DIR``), migrations to head, the vault
    (reloading the keyring after a rotation) and, unless ``processor`` is given, a
    :class:`SimulatedAcquirer` with ``PALMPAY_SIM_CARD_LIMIT``."""
    settings = settings or get_settings()
    keyring = load_keyring(settings)
    db = open_database(settings.resolved_database_url())
    vault = CardVault(keyring, keyring_loader=lambda: load_keyring(settings))
    if processor is None:
        processor = SimulatedAcquirer(card_limit=settings.sim_card_limit,
                                      journal=settings.sim_acquirer_journal)
    log.debug("payment service on %s", db.backend)
    return PaymentService(db, vault, processor, on_event, max_amount=settings.max_payment_amount)
