"""Request and response bodies of the HTTP API (Stripe-like JSON, ``created`` in Unix seconds).

Customers, payments and refunds are answered with the payment service's own views
(:mod:`palmpay.payments.views`: one shape per resource, also the webhook payload); this module
holds the request bodies, the problem document and the API's other responses.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from palmpay.api.models import ApiKeyScope

__all__ = [
    "AnalyzeOut",
    "ApiKeyIn",
    "CaptureIn",
    "HealthOut",
    "LandmarkOut",
    "OperatingPointOut",
    "Problem",
    "QualityOut",
    "RefundIn",
    "StatusOut",
    "WebhookEndpointIn",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


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
    scope: ApiKeyScope


class WebhookEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")


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


class OperatingPointOut(_Out):
    """The open-set operating point of the whole gallery (palmpay/decision.py)."""

    enrolled_samples: int = Field(description="Enrolled palm samples searched (N).")
    target_fpir: float = Field(description="Target share of strangers charged to anyone.")
    max_fnir: float = Field(description="Ceiling on enrolled shoppers not recognised.")
    threshold: float = Field(description="Decision threshold at N (rises with N).")
    expected_fpir: float = Field(description="Modelled FPIR at that threshold and N.")
    expected_fnir: float = Field(description="Calibration FNIR at that threshold.")
    n_safe: int = Field(description="Largest N searched on the palm alone.")
    narrowing_required: bool = Field(description="N > n_safe: payments need phone_last4.")


class StatusOut(_Out):
    object: Literal["status"] = "status"
    customers: int = Field(description="Customers in the palm index.")
    operating_point: OperatingPointOut
