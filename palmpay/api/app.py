"""The HTTP API application: ``create_app(settings) -> FastAPI`` (OpenAPI at ``/docs``).

Start-up (lifespan), in a worker thread:

1. the payment service from settings (keyring, database migrated to head, vault, acquirer),
   with ``on_event`` recording every committed business event for webhooks;
2. one :class:`~palmpay.recognizer.Recognizer` (ONNX models loaded once) behind a
   :class:`~palmpay.api.palms.PalmDirectory`, whose index is rebuilt from the database's
   templates (the database is the source of truth) and then kept in step with the changes
   other processes make by an :class:`~palmpay.api.replica.IndexReplica` (a thread following
   the palm change log, ``app.state.replica``);
3. the webhook dispatcher thread (which also purges expired idempotency keys);
4. crash recovery: the instance registers its lease (renewed by a heartbeat thread), and the
   authorisation intents of dead instances are reconciled (:mod:`palmpay.payments.intents`).

Shutdown stops the replica's feed and the dispatcher and closes the database pool.

Middleware, outermost first: request metrics (:mod:`palmpay.api.telemetry`), the catch-all
turning unhandled exceptions into a 500 problem (logged without their message), the body limit
(413 before reading an oversized body), then ``Idempotency-Key`` handling (which releases its
key on a 5xx or an exception), then FastAPI's routing with the problem+json error handlers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from palmpay import __version__
from palmpay.api import recovery
from palmpay.api.deps import AppState
from palmpay.api.errors import (
    PROBLEM_JSON,
    CatchAllMiddleware,
    document_problems,
    install_error_handlers,
)
from palmpay.api.idempotency import IdempotencyMiddleware, purge_expired
from palmpay.api.limits import BodyLimitMiddleware
from palmpay.api.palms import PalmDirectory
from palmpay.api.ratelimit import purge_counters
from palmpay.api.replica import IndexReplica
from palmpay.api.routes import (
    api_keys,
    capture,
    customers,
    health,
    kiosk,
    metrics,
    payments,
    problems,
    refunds,
    status,
    webhook_endpoints,
)
from palmpay.api.schemas import Problem, document_limits
from palmpay.api.telemetry import Publisher, RequestMetricsMiddleware
from palmpay.api.webhooks import WebhookDispatcher, record_event
from palmpay.config import Settings, get_settings
from palmpay.db import utcnow
from palmpay.payments import faults
from palmpay.payments.instances import InstanceRegistry
from palmpay.payments.retention import apply_retention
from palmpay.payments.service import build_service
from palmpay.recognizer import Recognizer

__all__ = ["create_app", "build_state"]

log = logging.getLogger(__name__)

_DESCRIPTION = """
Pay by palm. Kiosks enroll customers (palm photos + card + consent); terminals take payments
from checkout frames; admins manage API keys and webhook endpoints.

* Authentication: `Authorization: Bearer <API key>` (scopes kiosk, terminal, admin).
* Money: integer minor units (cents) with a lowercase ISO 4217 currency.
* Errors: RFC 9457 `application/problem+json`; `type` is `/problems/<code>` (a page describing
  it) and `code` repeats the code.
* Retries: send `Idempotency-Key` on any POST; a retry returns the stored response with
  `Idempotent-Replayed: true`.
* Webhooks: events are POSTed signed with `PalmPay-Signature: t=<unix>,v1=<HMAC-SHA256>`.
"""


def build_state(
    settings: Settings,
    clock: Callable[[], datetime] = utcnow,
    recognizer: Recognizer | None = None,
) -> AppState:
    """Build everything the routes share (blocking: loads models, migrates the database)."""
    dispatcher: WebhookDispatcher | None = None

    def on_event(event_type: str, obj: dict, merchant: str | None) -> None:
        record_event(service.db, event_type, obj, merchant)
        if dispatcher is not None:
            dispatcher.wake()

    service = build_service(settings, on_event=on_event)
    if settings.retention_on_start:
        apply_retention(service.db, clock(), settings.retention_months, actor="system")
    # Crash recovery: this process's instance (lease), the Idempotency-Key result links, and
    # the authorisation intents that dead instances left open, settled before serving.
    faults.arm(settings.fault_point)
    recovery.install()
    service.instances = InstanceRegistry(service.db, settings.instance_lease_s, clock)
    service.instances.register()
    service.reconciler().reconcile()
    palms = PalmDirectory(recognizer or Recognizer(settings), settings,
                          transform=service.template_transform)
    replica = IndexReplica(service, palms, settings)  # loads at the change log's position
    replica.load()
    dispatcher = WebhookDispatcher(
        service.db, settings, clock=clock,
        maintenance=lambda: (purge_expired(service.db, clock()),
                             purge_counters(service.db, clock())),
    )
    return AppState(settings=settings, db=service.db, service=service, palms=palms,
                    dispatcher=dispatcher, clock=clock, replica=replica)


def _problem_openapi(app: FastAPI, settings: Settings) -> None:
    """Document error responses as ``application/problem+json`` (FastAPI files every response
    model under ``application/json``), list every problem type of the catalogue, and write the
    limits ``settings`` enforce (:func:`~palmpay.api.schemas.document_limits`)."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = original()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    content = operation.get("responses", {}).get("default", {}).get("content")
                    if content:  # under the route's media type (text/html for an HTML route)
                        media = content.pop("application/json", None) or next(
                            iter(content.values()))
                        content.clear()
                        content[PROBLEM_JSON] = media
            document_problems(schema)
            document_limits(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    # FastAPI documents replacing app.openapi to customise the schema; mypy sees a method.
    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    recognizer: Recognizer | None = None,
) -> FastAPI:
    """The FastAPI app. ``clock`` (UTC now) and a prebuilt ``recognizer`` are for tests."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await run_in_threadpool(build_state, settings, clock or utcnow, recognizer)
        app.state.palmpay = state
        app.state.replica = state.replica
        state.dispatcher.start()
        publisher = Publisher(state, app.state)  # several workers: GET /metrics
        publisher.start()
        if state.replica is not None:
            state.replica.start()  # follows the change log (palmpay/api/replica.py)
        instances = state.service.instances
        if instances is not None:
            instances.start(maintenance=lambda: state.service.reconciler().reconcile())
        log.info("PalmPay API ready: %d enrolled palms, database %s", state.palms.customers,
                 state.db.backend)
        try:
            yield
        finally:
            if state.replica is not None:
                state.replica.stop()
            app.state.replica = None
            publisher.stop()
            state.dispatcher.stop()
            if state.service.instances is not None:
                state.service.instances.stop()
            state.db.dispose()
            app.state.palmpay = None

    app = FastAPI(
        title="PalmPay API",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        responses={"default": {"model": Problem, "description": "An error (RFC 9457)."}},
    )
    _problem_openapi(app, settings)
    app.state.palmpay = None
    app.state.replica = None  # the IndexReplica while serving (read by /metrics)
    install_error_handlers(app)
    for module in (customers, payments, refunds, capture, api_keys, webhook_endpoints, status,
                   health, problems, kiosk, metrics):
        app.include_router(module.router)
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(RequestMetricsMiddleware)  # outermost: times every answer
    return app
