"""Webhooks: events, signed deliveries, retries with exponential backoff.

Every business event the payment service reports (``on_event(type, obj)``, after its commit) is
stored in ``events`` together with one ``webhook_deliveries`` row per enabled endpoint, in one
transaction. A :class:`WebhookDispatcher` thread POSTs due deliveries; a delivery that fails
(connection error, timeout, non-2xx answer) is retried after ``webhook_backoff_s * 2**(n-1)``
seconds for its n-th failure, up to ``webhook_max_attempts`` attempts, then marked ``failed``.

The request body is the event as JSON::

    {"id": "evt_...", "object": "event", "type": "payment.succeeded", "created": 1700000000,
     "data": {"object": {...}}}

and carries ``PalmPay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
(:func:`sign`). Receivers check it with :func:`verify`, which also rejects timestamps more than
``tolerance_s`` away from their clock (replays). Delivery is at least once: receivers should
de-duplicate on the event ``id`` (also sent as ``PalmPay-Event-Id``).

Several server processes may share a database: a delivery is leased (its ``next_attempt_at`` is
pushed forward with a conditional UPDATE) before it is sent, so two dispatchers do not send the
same attempt.

Targets (:mod:`palmpay.api.egress`): an endpoint whose host is, or resolves to, a loopback,
private, link-local, multicast, unspecified or reserved address is refused at registration
(422 ``webhook_url_refused``) and, since DNS answers change, again before every delivery (a
failed attempt, ``last_error`` says why); a delivery connects to the address it checked and
follows no redirect. ``PALMPAY_WEBHOOK_ALLOW_PRIVATE=true`` lifts the address checks (local
development, tests with a receiver on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal, cast

import httpx
from pydantic import Field
from sqlalchemy import CursorResult, select, update

from palmpay.api.egress import Resolver, TargetRefused, resolve_target, system_resolver
from palmpay.api.models import Event, WebhookDelivery, WebhookEndpoint
from palmpay.config import Settings
from palmpay.db import Database, new_id, utcnow
from palmpay.payments.errors import PaymentError
from palmpay.payments.merchants import DEFAULT_MERCHANT_ID
from palmpay.payments.views import Unix, View

__all__ = [
    "SIGNATURE_HEADER",
    "SignatureError",
    "WebhookDispatcher",
    "WebhookEndpointView",
    "create_endpoint",
    "event_body",
    "record_event",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "PalmPay-Signature"
_USER_AGENT = "PalmPay-Webhooks/1"
_BATCH = 20


class SignatureError(ValueError):
    """A webhook signature header is malformed, stale, from the future or does not match."""


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body,
                    hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int | float, body: bytes | str) -> str:
    """The ``PalmPay-Signature`` header value: ``t=<unix>,v1=<hex HMAC-SHA256>``."""
    t = int(timestamp)
    return f"t={t},v1={_mac(secret, t, _as_bytes(body))}"


def verify(
    secret: str,
    header: str,
    body: bytes | str,
    tolerance_s: float = 300,
    now: float | None = None,
) -> int:
    """Check a ``PalmPay-Signature`` header against the raw request ``body``.

    Returns the signed timestamp; raises :class:`SignatureError` when the header is malformed,
    the timestamp is more than ``tolerance_s`` seconds in the past or future, or no ``v1``
    signature matches (compared in constant time).
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in (header or "").split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError as err:
                raise SignatureError("malformed timestamp") from err
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("signature header needs t=<unix> and v1=<hex>")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance (stale or from the future)")
    expected = _mac(secret, timestamp, _as_bytes(body))
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("no signature matches")
    return timestamp


class WebhookEndpointView(View):
    """A registered endpoint as the API shows it, read from its row; ``secret`` (the signing
    secret) is only in the creation response."""

    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    enabled: bool
    created: Unix = Field(validation_alias="created_at")
    secret: str | None = Field(
        None, repr=False, description="Signing secret; only in the creation response.")


def create_endpoint(db: Database, url: str, *, merchant: str = DEFAULT_MERCHANT_ID,
                    allow_private: bool = False,
                    resolver: Resolver = system_resolver) -> WebhookEndpointView:
    """Register an endpoint; the returned view carries its signing secret (shown once).

    Raises ``webhook_url_refused`` (naming the field ``url``) unless every address its host
    resolves to is public, or ``allow_private``."""
    try:
        resolve_target(url, allow_private=allow_private, resolver=resolver)
    except TargetRefused as exc:
        raise PaymentError("webhook_url_refused", f"url: {exc.reason}",
                           extra={"field": "url"}) from None
    secret = "whsec_" + secrets.token_urlsafe(24)
    row = WebhookEndpoint(id=new_id("we"), url=url, secret=secret, enabled=True,
                          created_at=utcnow(), merchant_id=merchant)
    with db.session() as session:
        session.add(row)
    log.info("registered webhook endpoint %s", row.id)
    return WebhookEndpointView.model_validate(row)


def event_body(event_id: str, event_type: str, created: datetime, obj: dict[str, Any]) -> bytes:
    """The JSON bytes POSTed for an event (stable key order: what is signed)."""
    return json.dumps(
        {"id": event_id, "object": "event", "type": event_type,
         "created": int(created.timestamp()), "data": {"object": obj}},
        separators=(",", ":"), sort_keys=True, default=str,
    ).encode("utf-8")


def record_event(db: Database, event_type: str, obj: dict[str, Any],
                 merchant: str | None = DEFAULT_MERCHANT_ID, now: datetime | None = None) -> str:
    """Store an event of ``merchant`` and a pending delivery for every enabled endpoint of that
    merchant (an event with ``merchant=None`` is delivered nowhere); returns its id."""
    now = now or utcnow()
    payload = json.loads(json.dumps(obj, default=str))
    event = Event(id=new_id("evt"), type=event_type, payload=payload, created_at=now,
                  merchant_id=merchant)
    with db.session() as session:
        session.add(event)
        session.flush()
        endpoints = session.scalars(
            select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True),
                                             WebhookEndpoint.merchant_id == merchant)
        ).all()
        for endpoint_id in endpoints:
            session.add(WebhookDelivery(event_id=event.id, endpoint_id=endpoint_id, attempts=0,
                                        next_attempt_at=now, state="pending", created_at=now))
    log.info("event %s %s (%d deliveries)", event.id, event_type, len(endpoints))
    return event.id


class WebhookDispatcher:
    """Background thread sending due webhook deliveries (also usable step by step:
    :meth:`run_once`). ``clock`` returns the current UTC time and ``resolver`` resolves host
    names (:data:`palmpay.api.egress.Resolver`; tests inject both)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] = utcnow,
        maintenance: Callable[[], object] | None = None,
        maintenance_every_s: float = 300.0,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.resolver = resolver
        self._client = client or httpx.Client(
            timeout=settings.webhook_timeout_s, follow_redirects=False,
            headers={"User-Agent": _USER_AGENT},
        )
        self._own_client = client is None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._maintenance = maintenance
        self._maintenance_every_s = maintenance_every_s

    # -- thread --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="palmpay-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._own_client:
            self._client.close()

    def wake(self) -> None:
        """Look for due deliveries now (called when an event is recorded)."""
        self._wake.set()

    def _run(self) -> None:
        last_maintenance = 0.0
        while not self._stop.is_set():
            try:
                if self._maintenance and time.monotonic() - last_maintenance > (
                        self._maintenance_every_s):
                    last_maintenance = time.monotonic()
                    self._maintenance()
                sent = self.run_once()
            except Exception:  # keep the thread alive; the database may be briefly away
                log.exception("webhook dispatcher iteration failed")
                sent = 0
            if sent:
                continue
            self._wake.wait(self.settings.webhook_poll_s)
            self._wake.clear()

    # -- one pass --------------------------------------------------------------------------
    def run_once(self) -> int:
        """Attempt every due delivery once; returns how many were attempted."""
        now = self.clock()
        with self.db.session(readonly=True) as session:
            due = session.execute(
                select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
                .where(WebhookDelivery.state == "pending",
                       WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(_BATCH)
            ).all()
        attempted = 0
        for delivery_id, due_at in due:
            if self._stop.is_set():
                break
            if self._lease(delivery_id, due_at, now):
                self._attempt(delivery_id)
                attempted += 1
        return attempted

    def _lease(self, delivery_id: int, due_at: datetime, now: datetime) -> bool:
        lease_until = now + timedelta(seconds=self.settings.webhook_timeout_s * 2 + 5)
        with self.db.session() as session:
            result = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending",
                       WebhookDelivery.next_attempt_at == due_at)
                .values(next_attempt_at=lease_until)
            )
            return cast("CursorResult[Any]", result).rowcount == 1  # an UPDATE: a CursorResult

    def _attempt(self, delivery_id: int) -> None:
        with self.db.session(readonly=True) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            event = endpoint = None
            if delivery is not None:
                event = session.get(Event, delivery.event_id)
                endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if delivery is None or event is None or endpoint is None:  # foreign keys forbid it
            log.error("webhook delivery %d lost its row, event or endpoint", delivery_id)
            return
        body = event_body(event.id, event.type, event.created_at, event.payload)
        error: str | None = None
        if not endpoint.enabled:
            with self.db.session() as session:
                session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                                .values(state="failed", last_error="endpoint disabled"))
            return
        try:
            # Checked again at every attempt (DNS rebinding); the request goes to that address.
            target = resolve_target(endpoint.url, resolver=self.resolver,
                                    allow_private=self.settings.webhook_allow_private)
            response = self._client.post(
                target.pinned_url,
                content=body,
                headers={
                    "Host": target.host_header,
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(endpoint.secret, self.clock().timestamp(), body),
                    "PalmPay-Event-Id": event.id,
                },
                extensions=target.extensions,
            )
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except TargetRefused as exc:
            error = f"refused: {exc.reason}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}"
        now = self.clock()
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if error is None:
            values |= {"state": "delivered", "delivered_at": now}
            log.info("delivered %s to %s (attempt %d)", event.id, endpoint.id, attempts)
        elif attempts >= self.settings.webhook_max_attempts:
            values |= {"state": "failed"}
            log.warning("giving up %s to %s after %d attempts: %s", event.id, endpoint.id,
                        attempts, error)
        else:
            delay = self.settings.webhook_backoff_s * 2 ** (attempts - 1)
            values |= {"next_attempt_at": now + timedelta(seconds=delay)}
            log.info("delivery of %s to %s failed (%s); retry %d in %.1f s", event.id,
                     endpoint.id, error, attempts + 1, delay)
        with self.db.session() as session:
            session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
            )


