"""Request and response bodies of the HTTP API (Stripe-like JSON, ``created`` in Unix seconds).

Customers, payments and refunds are answered with the payment service's own views
(:mod:`palmpay.payments.views`: one shape per resource, also the webhook payload); this module
holds the request bodies, the problem document and the API's other responses.

Every string a caller sends, in a JSON body, a form field or a path, is typed :data:`Text` (any
value free of control characters) or :data:`Name` (also stripped, and refused when blank): one
rule, :func:`palmpay.payments.validation.text_problem`, whose refusal is a 422
``validation_error`` naming the field and never quoting the value. Both carry a ``pattern`` in
the OpenAPI document (documentation for clients and fuzzers; the validator is what enforces).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from palmpay.api.decode import ALLOWED
from palmpay.api.models import ApiKeyScope
from palmpay.config import Settings
from palmpay.payments.validation import MAX_NAME, text_problem

__all__ = [
    "AnalyzeOut",
    "ApiKeyIn",
    "CaptureIn",
    "NAME_PATTERN",
    "Name",
    "NoControl",
    "Text",
    "TEXT_PATTERN",
    "HealthOut",
    "LandmarkOut",
    "OperatingPointOut",
    "Problem",
    "QualityOut",
    "RefundIn",
    "StatusOut",
    "WebhookEndpointIn",
    "document_limits",
]


_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
#: What :data:`Text` allows, as an ECMA-262 / Python regex for the OpenAPI document: no C0/C1
#: control character and no U+2028/U+2029 (lone surrogates cannot be written in a pattern).
TEXT_PATTERN = f"^[^{_CONTROL}]*$"
#: :data:`Name`: the same, with at least one character that is not white space.
NAME_PATTERN = f"^[^{_CONTROL}]*[^\\s{_CONTROL}][^{_CONTROL}]*$"


def _text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _name(value: str) -> str:
    problem = text_problem(value, name=True)
    if problem is not None:
        raise ValueError(problem)
    return value.strip()


#: The check alone, for a string whose schema has its own ``pattern`` (a URL).
NoControl = AfterValidator(_text)
#: A caller-given string without control characters (:func:`text_problem`); add length limits
#: where it is used (``Annotated[Text, Form(max_length=...)]``).
Text = Annotated[str, NoControl, Field(json_schema_extra={"pattern": TEXT_PATTERN})]
#: A required name: :data:`Text`, stripped of surrounding white space, with a visible character.
Name = Annotated[str, AfterValidator(_name), Field(json_schema_extra={"pattern": NAME_PATTERN})]


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
    payment: Text = Field(min_length=1, max_length=40)
    amount: int | None = Field(None, gt=0, description="Minor units; default: all that is left.")


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(min_length=1, max_length=MAX_NAME)
    scope: ApiKeyScope


class WebhookEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, NoControl] = Field(min_length=8, max_length=2000, pattern=r"^https?://")


#: Image types an upload may be (sniffed from its bytes: the declared part type is not trusted).
IMAGE_TYPES = ", ".join(f"image/{kind}" for kind in ALLOWED)


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return node


def _branches(node: dict[str, Any]) -> list[dict[str, Any]]:
    """``node`` itself, or the branches of its ``anyOf`` (an optional value)."""
    return node.get("anyOf", [node])


def document_limits(schema: dict[str, Any], settings: Settings) -> None:
    """Write the limits the settings enforce into an OpenAPI ``schema`` (FastAPI cannot: they
    are set when the app is built): every file array of a multipart body (``images``,
    ``frames``) takes 1 to ``max_images`` files, every file part is one of :data:`IMAGE_TYPES`
    (its ``encoding``), and

    every request-body ``amount`` is at most ``max_payment_amount``."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media_type, body in content.items():
                properties: dict[str, Any] = {}
                for branch in _branches(body.get("schema", {})):
                    properties |= _resolve(schema, branch).get("properties", {})
                for name, prop in properties.items():

                    if name == "amount":
                        for branch in _branches(prop):
                            if branch.get("type") == "integer":
                                branch["maximum"] = settings.max_payment_amount
                    if media_type != "multipart/form-data":
                        continue
                    is_files = (prop.get("type") == "array"
                                and "contentMediaType" in prop.get("items", {}))
                    if is_files:
                        prop.update(minItems=1, maxItems=settings.max_images)
                    if is_files or "contentMediaType" in prop:
                        body.setdefault("encoding", {})[name] = {"contentType": IMAGE_TYPES}


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
