"""Errors as RFC 9457 problem details (``application/problem+json``), and their catalogue.

Every error the API answers with is one JSON object::

    {"type": "/problems/card_declined", "title": "Card declined", "status": 402,
     "detail": "the card was declined", "instance": "/v1/payments", "code": "card_declined",
     ...extension members, e.g. "payment": "pay_..."}

:data:`CATALOGUE` (:mod:`palmpay.api.catalogue`) is the one table of error codes
(Stripe-style): each ``code`` has exactly one HTTP status, a title and a description, and its
``type`` is the URI reference
``/problems/<code>``, relative to the API's own origin; ``GET /problems/<code>`` serves a
human-readable page describing it, and the OpenAPI document lists every code
(:func:`document_problems`). Code raises :class:`~palmpay.payments.errors.PaymentError` with a
code and a detail only; the status comes from here. ``code`` repeats the last path segment of
``type`` so clients can switch on a plain string. ``instance`` is the request path.

Problems are sent by the exception handlers (:func:`install_error_handlers`) and, where raw
ASGI middleware answers before FastAPI (body limit, ``Idempotency-Key``, the catch-all), by
:func:`send_problem`.

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
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from palmpay.api.catalogue import CATALOGUE, ProblemType, problem_type
from palmpay.payments.errors import PaymentError

__all__ = [
    "CATALOGUE",
    "PROBLEM_JSON",
    "CatchAllMiddleware",
    "ProblemType",
    "allowed_methods",
    "document_problems",
    "install_error_handlers",
    "problem_body",
    "problem_page",
    "problem_response",
    "problem_type",
    "send_problem",
    "status_of",
    "validation_errors",
]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"




def status_of(code: str) -> int:
    """The HTTP status of ``code``; an uncatalogued code is a bug, answered as 500."""
    entry = CATALOGUE.get(code)
    if entry is None:
        log.error("problem code %r is not in the catalogue: answering 500", code)
        return 500
    return entry.status


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


def _title(code: str) -> str:
    entry = CATALOGUE.get(code)
    return entry.title if entry else code.replace("_", " ").capitalize()


def problem_body(
    code: str,
    detail: str,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem document of ``code`` (status from :data:`CATALOGUE`); ``extra`` members never
    override the standard ones."""
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": _title(code),
        "status": status_of(code),
        "detail": detail,
        "instance": instance,
        "code": code,
    }
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    return body


def problem_response(
    code: str,
    detail: str,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A ``JSONResponse`` with ``application/problem+json``."""
    body = problem_body(code, detail, instance, extra)
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON,
                        headers=dict(headers or {}))


async def send_problem(
    send: Send,
    scope: Scope,
    code: str,
    detail: str,
    extra: Mapping[str, Any] | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer a raw ASGI request with the problem of ``code`` (for middleware that runs outside
    FastAPI's exception handlers); ``headers`` are added to the content type and length."""
    body = problem_body(code, detail, scope.get("path"), extra)
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": body["status"], "headers": [
        (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(raw)).encode()),
        *headers]})
    await send({"type": "http.response.body", "body": raw})


def problem_page(code: str) -> HTMLResponse:
    """The human-readable page behind ``type`` (``GET /problems/{code}``)."""
    entry = CATALOGUE.get(code)
    if entry is None:
        status, title, text = "varies", _title(code), "No description is registered for this code."
    else:
        status, title, text = str(entry.status), entry.title, entry.description
    t, c, s, d = (html.escape(v) for v in (title, code, status, text))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{t}</title></head><body>"
        f"<h1>{t}</h1><p><code>code</code>: <code>{c}</code> &middot; HTTP status: {s}</p>"
        f"<p>{d}</p><p>Responses are RFC 9457 <code>application/problem+json</code>.</p>"
        "</body></html>"
    )
    return HTMLResponse(page, status_code=200 if entry else 404)


def document_problems(schema: dict[str, Any], component: str = "Problem") -> None:
    """List every catalogued problem type in an OpenAPI ``schema``: the ``Problem`` component's
    ``code`` and ``type`` become enums of all codes and their ``/problems/<code>`` URIs, its
    description a table of code, status and title, and ``x-problem-types`` maps each code to
    its status, title and type."""
    problem = schema.get("components", {}).get("schemas", {}).get(component)
    if problem is None:
        return
    codes = sorted(CATALOGUE)
    properties = problem.setdefault("properties", {})
    properties.setdefault("code", {})["enum"] = codes
    properties.setdefault("type", {})["enum"] = [problem_type(code) for code in codes]
    rows = "\n".join(f"| `{e.code}` | {e.status} | {e.title} |"
                     for e in sorted(CATALOGUE.values(), key=lambda e: (e.status, e.code)))
    problem["description"] = (problem.get("description", "") + "\n\n| code | status | title |"
                              "\n|---|---|---|\n" + rows)
    problem["x-problem-types"] = {
        e.code: {"status": e.status, "title": e.title, "type": e.type}
        for e in CATALOGUE.values()
    }


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
    assert isinstance(exc, PaymentError)
    return problem_response(exc.code, exc.detail, request.url.path, exc.extra, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    fields = ", ".join(sorted({e["field"] for e in errors})) or "request"
    return problem_response(
        "validation_error", f"invalid or missing fields: {fields}", request.url.path,
        {"errors": errors},
    )


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method the app takes at this request's path, OPTIONS included (Starlette's own
    ``Allow`` names only the methods of the first route whose path matched): each method is
    offered to the app's routes, as the router would."""
    routes = request.app.router.routes
    return [method for method in _METHOD_ORDER if method == "OPTIONS" or any(
        route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405 and request.method == "OPTIONS":
        # OPTIONS is answered on every route: no body, the methods the path takes.
        return Response(status_code=204, headers={"Allow": ", ".join(allowed_methods(request))})
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
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return problem_response(code, detail, request.url.path, headers=headers)


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


_INTERNAL = "the server failed unexpectedly"


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    incident = _incident(exc, request.method, request.url.path)
    return problem_response("internal_error", _INTERNAL, request.url.path,
                            {"incident": incident})


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
            await send_problem(send, scope, "internal_error", _INTERNAL, {"incident": incident})


def install_error_handlers(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(PaymentError, _payment_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
