"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API answers with is one JSON object::

    {"type": "/problems/card_declined", "title": "Card declined", "status": 402,
     "detail": "the card was declined", "instance": "/v1/payments", "code": "card_declined",
     ...extension members, e.g. "payment": "pay_..."}

``type`` is a URI reference that is stable per ``code``: ``/problems/<code>``, relative to the
API's own origin, and ``GET /problems/<code>`` serves a human-readable page describing it
(:data:`PROBLEMS` is the catalogue; unknown codes still get a page with a generic title).
``code`` repeats the last path segment of ``type`` so clients can switch on a plain string.
``instance`` is the request path.

What never appears in a problem: request bodies or field values (a card number that fails
validation is named as a field, never quoted), stack traces, SQL, or anything from an
unexpected exception (``internal_error`` carries only an ``incident`` id that is also logged).
"""

from __future__ import annotations

import html
import json
import logging
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from palmpay.payments.errors import ERROR_STATUS, PaymentError

__all__ = [
    "PROBLEM_JSON",
    "PROBLEMS",
    "ApiError",
    "CatchAllMiddleware",
    "ProblemInfo",
    "install_error_handlers",
    "problem_body",
    "problem_page",
    "problem_response",
    "problem_type",
    "validation_errors",
]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class ProblemInfo:
    """Catalogue entry of one problem ``code``: usual HTTP status, title and a description."""

    status: int
    title: str
    description: str


def _p(status: int, title: str, description: str) -> ProblemInfo:
    return ProblemInfo(status, title, description)


#: Every problem code the API answers with (payment codes from
#: :data:`palmpay.payments.errors.ERROR_STATUS` included).
PROBLEMS: dict[str, ProblemInfo] = {
    # authentication and routing
    "unauthorized": _p(401, "Unauthorized", "No API key was given, or the key is unknown or "
                       "revoked. Send `Authorization: Bearer <secret>`."),
    "forbidden": _p(403, "Forbidden", "The API key is valid but its scope does not allow this "
                    "operation (kiosk keys enroll, terminal keys take payments, admin keys do "
                    "everything)."),
    "not_found": _p(404, "Not found", "No such route or object."),
    "method_not_allowed": _p(405, "Method not allowed",
                             "The route exists but not with this HTTP method (see `Allow`)."),
    "bad_request": _p(400, "Bad request", "The request body could not be parsed."),
    "payload_too_large": _p(413, "Payload too large",
                            "The request body or one uploaded image is larger than the server "
                            "accepts (`max_upload_bytes`, `max_image_bytes`)."),
    "unsupported_media_type": _p(415, "Unsupported media type",
                                 "The body has the wrong content type (for example JSON sent "
                                 "to an endpoint that takes multipart/form-data), or an "
                                 "uploaded file is not an image (PNG, JPEG, BMP, WebP, TIFF)."),
    "validation_error": _p(422, "Validation error",
                           "One or more request fields are missing or invalid; `errors` lists "
                           "them as {field, message, type}."),
    "internal_error": _p(500, "Internal error",
                         "The server failed unexpectedly. Retry with the same "
                         "Idempotency-Key; the `incident` id is in the server log."),
    "service_unavailable": _p(503, "Service unavailable", "The server is not ready."),
    # idempotency
    "idempotency_conflict": _p(409, "Idempotency conflict",
                               "The Idempotency-Key was already used with a different request, "
                               "or a request with this key is still being processed."),
    # images and palms
    "invalid_image": _p(422, "Invalid image",
                        "An uploaded image could not be decoded; `image` names the part and "
                        "file."),
    "palm_not_found": _p(422, "No usable palm",
                         "Too few images showed a usable palm (ROI found and quality gates "
                         "passed); `images` gives each file's reason."),
    "palm_not_recognised": _p(422, "Palm not recognised",
                              "The palm does not match any enrolled customer. Ask the shopper "
                              "to enroll or to pay another way."),
    "palm_already_enrolled": _p(409, "Palm already enrolled",
                                "This palm is already enrolled by another customer."),
    # payments core
    "invalid_request": _p(422, "Invalid request", "A request value is invalid."),
    "invalid_card": _p(422, "Invalid card", "The card number, expiry or holder name is "
                       "invalid (digits, length, Luhn check)."),
    "expired_card": _p(422, "Expired card", "The card has expired."),
    "invalid_amount": _p(422, "Invalid amount",
                         "Amounts are positive integers in the currency's minor unit."),
    "invalid_currency": _p(422, "Invalid currency", "Unknown ISO 4217 currency code."),
    "invalid_template": _p(422, "Invalid template", "A palm template is malformed."),
    "amount_too_large": _p(422, "Amount too large", "The amount exceeds the largest allowed."),
    "consent_required": _p(422, "Consent required",
                           "Enrollment needs the shopper's explicit biometric consent "
                           "(`consent=true`)."),
    "card_declined": _p(402, "Card declined", "The card issuer declined the payment; "
                        "`decline_code` may say why and `payment` is the failed payment."),
    "insufficient_funds": _p(402, "Insufficient funds",
                             "The card has insufficient funds; `payment` is the failed payment."),
    "customer_not_found": _p(404, "Customer not found", "No customer has this id."),
    "payment_not_found": _p(404, "Payment not found", "No payment has this id."),
    "refund_not_found": _p(404, "Refund not found", "No refund has this id."),
    "payment_unexpected_state": _p(409, "Payment in unexpected state",
                                   "The payment's status does not allow this operation (for "
                                   "example capturing a canceled payment)."),
    "duplicate_card": _p(409, "Duplicate card", "This card is already enrolled."),
    "customer_deleted": _p(409, "Customer deleted", "The customer was deleted."),
    "card_unavailable": _p(409, "Card unavailable", "The customer's card is not usable."),
    "processor_error": _p(502, "Processor error",
                          "The card processor failed (not a decline); try again later."),
}

_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error the API answers as a problem: ``code``, HTTP ``status``, safe ``detail``,
    extension members ``extra`` and response ``headers``."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if status is None:
            info = PROBLEMS.get(code)
            status = info.status if info else ERROR_STATUS.get(code, 400)
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"ApiError(code={self.code!r}, status={self.status}, detail={self.detail!r})"


def problem_type(code: str) -> str:
    """The stable ``type`` URI reference of ``code``."""
    return f"/problems/{code}"


def _title(code: str) -> str:
    info = PROBLEMS.get(code)
    return info.title if info else code.replace("_", " ").capitalize()


def problem_body(
    code: str,
    status: int,
    detail: str,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem document; ``extra`` members never override the standard ones."""
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": _title(code),
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
    }
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    return body


def problem_response(
    code: str,
    status: int,
    detail: str,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A ``JSONResponse`` with ``application/problem+json``."""
    return JSONResponse(
        problem_body(code, status, detail, instance, extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


def problem_page(code: str) -> HTMLResponse:
    """The human-readable page behind ``type`` (``GET /problems/{code}``)."""
    info = PROBLEMS.get(code)
    if info is None:
        status, title, text = "varies", _title(code), "No description is registered for this code."
    else:
        status, title, text = str(info.status), info.title, info.description
    t, c, s, d = (html.escape(v) for v in (title, code, status, text))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{t}</title></head><body>"
        f"<h1>{t}</h1><p><code>code</code>: <code>{c}</code> &middot; HTTP status: {s}</p>"
        f"<p>{d}</p><p>Responses are RFC 9457 <code>application/problem+json</code>.</p>"
        "</body></html>"
    )
    return HTMLResponse(page, status_code=200 if info else 404)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or parts
    return ".".join(parts)


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Field errors as ``{field, message, type}``. Pydantic's ``input`` (the rejected value,
    which may be a card number) and ``ctx`` are dropped; its messages do not quote the input."""
    return [
        {"field": _field(error.get("loc", ())), "message": str(error.get("msg", "invalid")),
         "type": str(error.get("type", "value_error"))}
        for error in exc.errors()
    ]


async def _payment_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PaymentError | ApiError)
    headers = getattr(exc, "headers", None)
    return problem_response(exc.code, exc.status, exc.detail, request.url.path, exc.extra, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    fields = ", ".join(sorted({e["field"] for e in errors})) or "request"
    return problem_response(
        "validation_error", 422, f"invalid or missing fields: {fields}", request.url.path,
        {"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _REASONS.get(exc.status_code, "bad_request" if exc.status_code < 500 else
                        "internal_error")
    detail = {
        404: "no such resource",
        405: f"{request.method} is not allowed here",
        401: "a valid API key is required",
    }.get(exc.status_code, str(exc.detail) if exc.status_code < 500 else "internal error")
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return problem_response(code, exc.status_code, detail, request.url.path, headers=headers)


def _incident(exc: BaseException, method: str, path: str) -> str:
    incident = uuid.uuid4().hex
    # Type and stack frames only: exception messages may carry SQL parameters or other data.
    log.error(
        "incident %s: unhandled %s in %s %s\n%s",
        incident,
        type(exc).__name__,
        method,
        path,
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    return incident


def _internal_body(incident: str, path: str | None) -> dict[str, Any]:
    return problem_body("internal_error", 500, "the server failed unexpectedly", path,
                        {"incident": incident})


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    incident = _incident(exc, request.method, request.url.path)
    return JSONResponse(_internal_body(incident, request.url.path), status_code=500,
                        media_type=PROBLEM_JSON)


class CatchAllMiddleware:
    """Outermost: an exception no handler took becomes a 500 ``internal_error`` problem here,
    logged once without its message, instead of reaching the server (which would log the
    message and traceback, and could leak data into the log)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            incident = _incident(exc, scope.get("method", ""), scope.get("path", ""))
            if started:
                return  # too late for a problem document; the response is cut short
            body = json.dumps(_internal_body(incident, scope.get("path"))).encode()
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def install_error_handlers(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(PaymentError, _payment_error)
    app.add_exception_handler(ApiError, _payment_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
