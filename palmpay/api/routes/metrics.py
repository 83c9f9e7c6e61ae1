"""``GET /metrics``: Prometheus exposition (:func:`palmpay.api.telemetry.render`).

Who may scrape (docs/operations.md):

- ``PALMPAY_METRICS_TOKEN`` set: a request with ``Authorization: Bearer <token>``, from any
  address (401 ``unauthorized`` otherwise);
- else ``PALMPAY_METRICS_PUBLIC=true``: anyone;
- else: loopback clients only (``127.0.0.0/8``, ``::1``: a Prometheus or agent on the same
  host; 403 ``forbidden`` for others).

API keys do not open it: a key belongs to one merchant, and the metrics count every
merchant's traffic and gallery. The metrics hold no customer id, card, key or raw path, but do
tell traffic, refusal rates and gallery size, so they are not served to the internet by
default. A reverse proxy on the same host makes every client look local: block ``/metrics`` at
the proxy or set the token. The route is not in the OpenAPI document (an operator endpoint,
not part of the merchant API).

The body is Prometheus text format 0.0.4 unless the scraper's ``Accept`` asks for
OpenMetrics or text 1.0.0.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from fastapi import APIRouter, Request, Response

from palmpay.api import telemetry
from palmpay.api.deps import StateDep
from palmpay.config import Settings
from palmpay.payments.errors import PaymentError

__all__ = ["authorize_scrape", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:  # "testclient", a unix socket peer, ...
        return False


def authorize_scrape(request: Request, settings: Settings) -> None:
    """Raise unless this request may read the metrics (see the module docstring)."""
    token = settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.get_secret_value().encode()):
            raise PaymentError("unauthorized", "send Authorization: Bearer <metrics token>",
                               headers={"WWW-Authenticate": "Bearer"})
        return
    if settings.metrics_public:
        return
    host = request.client.host if request.client is not None else None
    if not _loopback(host):
        raise PaymentError("forbidden", "metrics are served to loopback clients only; set "
                           "PALMPAY_METRICS_TOKEN (or PALMPAY_METRICS_PUBLIC) to scrape from "
                           "elsewhere")


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, state: StateDep) -> Response:
    """The Prometheus scrape."""
    authorize_scrape(request, state.settings)
    body, content_type = telemetry.render(state, request.app.state,
                                          request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
