"""What the payment service's parts share: its collaborators, row lookups and event emission.

:class:`ServiceCore` holds the database, vault, acquirer, ``on_event`` handler and amount
limit; :class:`~palmpay.payments.customers.CustomerOperations` and
:class:`~palmpay.payments.payments.PaymentOperations` build on it, and
:class:`~palmpay.payments.service.PaymentService` joins the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from palmpay.db import Database
from palmpay.payments.errors import PaymentError
from palmpay.payments.models import Card, Customer, Payment
from palmpay.payments.processor import Processor
from palmpay.payments.states import CustomerStatus
from palmpay.payments.vault import CardVault
from palmpay.payments.views import View

__all__ = ["EventHandler", "ServiceCore"]

log = logging.getLogger(__name__)

#: ``on_event(type, object, merchant)``: called after a commit with the view's JSON form and the
#: id of the merchant that owns the object (webhooks go only to that merchant's endpoints).
EventHandler = Callable[[str, dict, "str | None"], None]


_Row = TypeVar("_Row", Customer, Payment)


def _row(session: Session, model: type[_Row], key: str, noun: str, *, lock: bool) -> _Row:
    """The row, locked ``FOR UPDATE`` when ``lock``; ``<noun>_not_found`` if there is none."""
    row = session.get(model, key, with_for_update=lock or None)
    if row is None:
        raise PaymentError(f"{noun}_not_found", f"no {noun} {key}", extra={noun: key})
    return row


class ServiceCore:
    """The service's collaborators (see :class:`~palmpay.payments.service.PaymentService`)."""

    def __init__(
        self,
        db: Database,
        vault: CardVault,
        processor: Processor,
        on_event: EventHandler | None = None,
        *,
        max_amount: int = 99_999_999,
    ) -> None:
        self.db = db
        self.vault = vault
        self.processor = processor
        self.on_event = on_event
        self.max_amount = max_amount

    def _emit(self, event_type: str, view: View, merchant: str | None = None) -> None:
        if self.on_event is None:
            return
        owner = merchant if merchant is not None else getattr(view, "merchant", None)
        try:
            self.on_event(event_type, view.to_dict(), owner)
        except Exception:
            log.exception("on_event handler failed for %s (change already committed)", event_type)

    @staticmethod
    def _customer(session: Session, customer_id: str, *, lock: bool = False) -> Customer:
        return _row(session, Customer, customer_id, "customer", lock=lock)

    @classmethod
    def _active_customer(cls, session: Session, customer_id: str) -> Customer:
        """The customer, locked; ``customer_deleted`` unless it is active."""
        customer = cls._customer(session, customer_id, lock=True)
        if customer.status != CustomerStatus.ACTIVE:
            raise PaymentError("customer_deleted", f"customer {customer_id} is deleted",
                               extra={"customer": customer_id})
        return customer

    @staticmethod
    def _card_of(customer: Customer) -> Card:
        card = customer.card
        if card is None:  # every customer is created with a card
            raise PaymentError("card_unavailable", f"customer {customer.id} has no card")
        return card

    @staticmethod
    def _payment(session: Session, payment_id: str, *, lock: bool = False) -> Payment:
        return _row(session, Payment, payment_id, "payment", lock=lock)
