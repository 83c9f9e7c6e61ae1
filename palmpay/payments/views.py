"""What the payment service returns: one frozen Pydantic view per resource, read from its row.

Each view is validated straight from the ORM row (``model_config = ConfigDict(from_attributes=
True)``): :meth:`CustomerView.model_validate(customer_row) <pydantic.BaseModel.model_validate>`
reads the row's columns and relationships, and timestamps become Unix seconds on the way in
(:data:`Unix`). The same object is what the HTTP API answers with (Stripe-like JSON: an
``object`` member naming the type, ``created`` in Unix seconds) and what webhooks deliver
(:meth:`View.to_dict`), so every resource has one shape. Members only the service's callers
need (a card's ``status``, a payment's ``terminal``, the consent time, the ``merchant`` of a
customer or payment) are excluded from that
JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, computed_field

from palmpay.payments.states import (
    CaptureMethod,
    CardStatus,
    CustomerStatus,
    PaymentStatus,
    RefundStatus,
)

__all__ = [
    "CardView",
    "CustomerView",
    "PaymentMethodView",
    "PaymentView",
    "RefundView",
    "Unix",
    "View",
    "unix",
]


def unix(value: datetime | int | None) -> int | None:
    """Unix seconds of a datetime (ints and ``None`` unchanged)."""
    if isinstance(value, datetime):
        return int(value.timestamp())
    return value


#: An ``int`` of Unix seconds, accepting a timezone-aware datetime (a row's timestamp).
Unix = Annotated[int, BeforeValidator(unix)]


class View(BaseModel):
    """Base of every resource view: frozen, validated from a row (or by field name)."""

    model_config = ConfigDict(frozen=True, from_attributes=True, populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the API response and the webhook payload)."""
        return self.model_dump(mode="json")


class CardView(View):
    """A stored card as shown to clients: token, brand, last four digits, expiry."""

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    status: CardStatus = Field(exclude=True)


class CustomerView(View):
    """An enrolled (``active``) or unenrolled (``deleted``) customer; ``templates`` counts the
    stored palm templates (0 once deleted)."""

    id: str
    object: Literal["customer"] = "customer"
    name: str
    status: CustomerStatus
    card: CardView
    templates: int = Field(validation_alias="template_count",
                           description="Stored palm templates (0 once deleted).")
    created: Unix = Field(validation_alias="created_at")
    deleted_at: Annotated[int | None, BeforeValidator(unix)] = None
    consent_at: datetime = Field(exclude=True)
    merchant: str | None = Field(None, validation_alias="merchant_id", exclude=True)

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented stacking
    @property
    def deleted(self) -> bool:
        """Whether the customer was unenrolled."""
        return self.status == CustomerStatus.DELETED


class PaymentMethodView(View):
    """The card a payment was taken from, as shown on the payment."""

    brand: str
    last4: str
    token: str


class PaymentView(View):
    """A payment. ``amount`` is what was authorised (or asked, when failed);
    ``amount_capturable`` what a manual capture may still take; ``amount_received`` what was
    captured; ``amount_refunded`` what was given back. ``customer`` is the customer id."""

    id: str
    object: Literal["payment"] = "payment"
    amount: int = Field(description="Minor units (cents).")
    currency: str
    status: PaymentStatus
    capture_method: CaptureMethod
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    customer: str = Field(validation_alias="customer_id")
    customer_name: str | None = Field(
        None, description="The customer's name, on the response to the payment just taken by "
                          "palm (for the terminal's approval screen); null elsewhere.")
    payment_method: PaymentMethodView = Field(validation_alias="card")
    decline_code: str | None
    created: Unix = Field(validation_alias="created_at")
    card: CardView = Field(exclude=True)
    terminal: str | None = Field(exclude=True)
    merchant: str | None = Field(None, validation_alias="merchant_id", exclude=True)


class RefundView(View):
    """A refund of (part of) a payment's captured amount; ``payment`` is the payment id."""

    id: str
    object: Literal["refund"] = "refund"
    payment: str = Field(validation_alias="payment_id")
    amount: int
    currency: str
    status: RefundStatus
    created: Unix = Field(validation_alias="created_at")
