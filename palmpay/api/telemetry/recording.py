"""What records the API's metrics: their definitions, the request middleware and the
identification and frame counters (:mod:`palmpay.api.telemetry`)."""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from palmpay.payments.errors import PaymentError

if TYPE_CHECKING:
    from palmpay.api.palms import Analysis

__all__ = ["FRAMES", "GATE_FAILURES", "IDENTIFICATIONS", "IN_PROGRESS", "LATENCY_BUCKETS",
           "OUTCOMES", "REQUEST_SECONDS", "SCORES", "SCORE_BUCKETS", "RequestMetricsMiddleware",
           "decision_score", "frame", "identification", "multiprocess_dir", "no_palm_counted",
           "route_of"]

log = logging.getLogger(__name__)

#: Identification outcomes of ``POST /v1/payments``.
OUTCOMES = ("matched", "refused_below_threshold", "unpayable_candidate", "no_palm",
            "narrowing_required", "presentation_attack")
_STATUSES = ("ok", "low_quality", "no_hand", "multiple_hands", "bad_pose", "palm_too_small",
             "invalid_image")
_GATES = ("blurred", "too_dark", "too_bright", "palm_too_small")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Seconds: fast JSON routes (capture, refund: a few ms) to pay-by-palm (tens to hundreds).
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.35, 0.5, 0.75,
                   1.0, 1.5, 2.5, 5.0, 10.0)
#: Fused code scores (0..1, accept at >= threshold): every 0.01 from 0.6 to 0.7, where the
#: threshold lies (0.613 for one sample, 0.682 at 1 M: docs/operations.md) and genuine and
#: impostor scores meet.
SCORE_BUCKETS = (0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.575, 0.6, 0.61, 0.62, 0.63, 0.64, 0.65,
                 0.66, 0.67, 0.68, 0.69, 0.7, 0.725, 0.75, 0.8, 0.9, 1.0)

REQUEST_SECONDS = Histogram(
    "palmpay_http_request_duration_seconds", "HTTP request latency, first byte in to last "
    "byte out, by route template, method and status class.", ("route", "method", "status"),
    buckets=LATENCY_BUCKETS)
IN_PROGRESS = Gauge("palmpay_http_requests_in_progress", "HTTP requests being served.",
                    multiprocess_mode="livesum")
IDENTIFICATIONS = Counter(
    "palmpay_identifications", "Pay-by-palm identification outcomes; narrowed: the search "
    "covered only the customers with the given phone digits.", ("outcome", "narrowed"))
SCORES = Histogram(
    "palmpay_identification_score", "Fused score of the best candidate of a pay-by-palm "
    "search (0 when the search had none); accepted: it reached the threshold for the samples "
    "searched.", ("narrowed", "accepted"), buckets=SCORE_BUCKETS)
FRAMES = Counter("palmpay_frames", "Uploaded images analysed, by the route they came through "
                 "and pipeline status (ok: usable).", ("route", "status"))
GATE_FAILURES = Counter("palmpay_frame_quality_failures", "Quality gates failed by frames "
                        "whose palm was found (status low_quality).", ("route", "gate"))
for _narrowed in ("false", "true"):
    for _outcome in OUTCOMES:
        IDENTIFICATIONS.labels(_outcome, _narrowed)
    for _accepted in ("false", "true"):
        SCORES.labels(_narrowed, _accepted)

#: The ASGI scope of the request being served (read by :func:`frame`; sync routes run in a
#: worker thread, which gets a copy of this context).
_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("palmpay_scope",
                                                                       default=None)


def multiprocess_dir() -> Path | None:
    """The folder of prometheus-client's multi-process mode, or None (one process)."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


# -- recording -------------------------------------------------------------------------------
def _flag(narrowed: bool) -> str:
    return "true" if narrowed else "false"


def identification(outcome: str, narrowed: bool = False) -> None:
    """Count one pay-by-palm identification outcome (one of :data:`OUTCOMES`)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown identification outcome {outcome!r}")
    IDENTIFICATIONS.labels(outcome, _flag(narrowed)).inc()


def decision_score(score: float, narrowed: bool = False, accepted: bool = False) -> None:
    """Observe the fused score a pay-by-palm search decided on (``accepted``: it reached the
    threshold)."""
    if score == score:  # not NaN
        SCORES.labels(_flag(narrowed), _flag(accepted)).observe(score)


@contextmanager
def no_palm_counted(narrowed: bool = False) -> Iterator[None]:
    """Count ``no_palm`` when the block raises ``palm_not_found`` (no usable frame)."""
    try:
        yield
    except PaymentError as exc:
        if exc.code == "palm_not_found":
            identification("no_palm", narrowed)
        raise


def frame(analysis: Analysis) -> Analysis:
    """Count one analysed uploaded image (returns it)."""
    scope = _scope.get()
    route = route_of(scope) if scope is not None else "none"
    status = analysis.frame.status if analysis.frame.status in _STATUSES else "other"
    FRAMES.labels(route, status).inc()
    quality = analysis.frame.quality
    if status == "low_quality" and quality is not None:
        for gate in quality.problems:
            GATE_FAILURES.labels(route, gate if gate in _GATES else "other").inc()
    return analysis


# -- requests --------------------------------------------------------------------------------
def _templates(app: Any) -> list[tuple[re.Pattern[str], str]]:
    """The app's OpenAPI path templates as regular expressions (cached on the app)."""
    cached = getattr(app.state, "telemetry_templates", None)
    if cached is None:
        cached = [(compile_path(path)[0], path) for path in app.openapi().get("paths", {})]
        app.state.telemetry_templates = cached
    return cached


def route_of(scope: Scope) -> str:
    """The route template of a request: the route that served it, else the OpenAPI path
    template its path matches (answers given before routing), else ``unmatched``."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str):
        return template
    app = scope.get("app")
    if app is not None:
        try:
            for pattern, path in _templates(app):
                if pattern.match(scope.get("path", "")):
                    return path
        except Exception:  # the schema could not be built: never fail a request for a label
            log.debug("no OpenAPI templates for request metrics", exc_info=True)
    return "unmatched"


class RequestMetricsMiddleware:
    """ASGI middleware timing every HTTP request (add it last: outermost)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = _scope.set(scope)
        start = time.perf_counter()
        IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            IN_PROGRESS.dec()
            method = scope.get("method", "")
            REQUEST_SECONDS.labels(route_of(scope), method if method in _METHODS else "other",
                                   f"{status // 100}xx").observe(time.perf_counter() - start)
            _scope.reset(token)
