"""Request and response bodies of the HTTP API (Stripe-like JSON, ``created`` in Unix seconds).

The payment service's views are turned into these by :func:`customer_out`,
:func:`payment_out`, :func:`refund_out`, which accept a view or its ``to_dict()`` (the form the
service passes to ``on_event``), so webhook payloads and API responses have one shape
(:func:`api_object`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AnalyzeOut",
    "ApiKeyIn",
    "ApiKeyOut",
    "CaptureIn",
    "CardOut",
    "CustomerOut",
    "HealthOut",
    "LandmarkOut",
    "PaymentMethodOut",
    "PaymentOut",
    "Problem",
    "QualityOut",
    "RefundIn",
    "RefundOut",
    "WebhookEndpointIn",
    "WebhookEndpointOut",
    "api_object",
    "customer_out",
    "payment_out",
    "refund_out",
    "unix",
]


def unix(value: datetime | str | None) -> int | None:
    """Unix seconds of a datetime or an ISO 8601 string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return int(value.timestamp())


def _dict(obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else obj.to_dict()


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CardOut(_Out):
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class CustomerOut(_Out):
    id: str
    object: Literal["customer"] = "customer"
    name: str
    status: Literal["active", "deleted"]
    card: CardOut
    templates: int = Field(description="Stored palm templates (0 once deleted).")
    created: int
    deleted: bool = False
    deleted_at: int | None = None


class PaymentMethodOut(_Out):
    brand: str
    last4: str
    token: str


class PaymentOut(_Out):
    id: str
    object: Literal["payment"] = "payment"
    amount: int = Field(description="Minor units (cents).")
    currency: str
    status: Literal["requires_capture", "succeeded", "canceled", "failed"]
    capture_method: Literal["automatic", "manual"]
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    customer: str
    customer_name: str | None = Field(
        None, description="The customer's name, on the response to the payment just taken by "
                          "palm (for the terminal's approval screen); null elsewhere.")
    payment_method: PaymentMethodOut
    decline_code: str | None
    created: int


class RefundOut(_Out):
    id: str
    object: Literal["refund"] = "refund"
    payment: str
    amount: int
    currency: str
    status: str
    created: int


def customer_out(view: Any) -> CustomerOut:
    d = _dict(view)
    card = d["card"]
    return CustomerOut(
        id=d["id"], name=d["name"], status=d["status"],
        card=CardOut(token=card["token"], brand=card["brand"], last4=card["last4"],
                     exp_month=card["exp_month"], exp_year=card["exp_year"]),
        templates=d["templates"], created=unix(d["created_at"]),
        deleted=d["status"] == "deleted", deleted_at=unix(d.get("deleted_at")),
    )


def payment_out(view: Any) -> PaymentOut:
    d = _dict(view)
    card = d["card"]
    return PaymentOut(
        id=d["id"], amount=d["amount"], currency=d["currency"], status=d["status"],
        capture_method=d["capture_method"], amount_capturable=d["amount_capturable"],
        amount_received=d["amount_received"], amount_refunded=d["amount_refunded"],
        customer=d["customer"],
        payment_method=PaymentMethodOut(brand=card["brand"], last4=card["last4"],
                                        token=card["token"]),
        decline_code=d.get("decline_code"), created=unix(d["created_at"]),
    )


def refund_out(view: Any) -> RefundOut:
    d = _dict(view)
    return RefundOut(id=d["id"], payment=d["payment"], amount=d["amount"],
                     currency=d["currency"], status=d["status"], created=unix(d["created_at"]))


def api_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A service ``to_dict()`` in the API's JSON shape (unknown objects unchanged)."""
    convert = {"customer": customer_out, "payment": payment_out, "refund": refund_out}.get(
        obj.get("object", ""))
    return convert(obj).model_dump(mode="json") if convert else obj


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``); extension members vary by
    ``code`` (e.g. ``payment`` on a decline, ``errors`` on a validation error)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="`/problems/<code>`; GET it for a description.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(description="The request path.")
    code: str


class CaptureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int | None = Field(None, gt=0, description="Minor units; default: all capturable.")


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment: str = Field(min_length=1, max_length=40)
    amount: int | None = Field(None, gt=0, description="Minor units; default: all that is left.")


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scope: Literal["kiosk", "terminal", "admin"]


class ApiKeyOut(_Out):
    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    scope: str
    prefix: str
    created: int
    revoked: bool = False
    secret: str | None = Field(None, description="Only in the creation response.")


class WebhookEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")


class WebhookEndpointOut(_Out):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    enabled: bool
    created: int
    secret: str | None = Field(None, description="Signing secret; only in the creation response.")


class QualityOut(_Out):
    sharpness: float
    brightness: float
    palm_fraction: float
    problems: list[str]


class LandmarkOut(_Out):
    x: float
    y: float


class AnalyzeOut(_Out):
    ok: bool = Field(description="Usable for enrollment or payment: ROI found, quality passed.")
    roi_status: str
    reason: str
    quality: QualityOut | None
    handedness: str | None
    palm_width: float
    landmarks: list[LandmarkOut] | None = Field(
        None, description="21 hand landmarks in image pixels (MediaPipe order).")
    width: int
    height: int


class HealthOut(_Out):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "error"]
    models_loaded: bool
    enrolled_palms: int = Field(description="Customers in the palm index.")
    samples: int
