"""Prometheus telemetry of the API: the metrics, what records them, and the scrape.

``GET /metrics`` (:mod:`palmpay.api.routes.metrics`) answers :func:`render`. What is measured
(names and labels are in docs/operations.md, with what to graph and alert on):

- **requests**: :class:`RequestMetricsMiddleware` (outermost) times every HTTP request into
  ``palmpay_http_request_duration_seconds{route, method, status}``, ``route`` being the route
  template (``/v1/payments/{payment_id}/capture``, never the raw path: ids would make a series
  per payment), ``status`` the class (``2xx`` ...). Answers given before routing (an
  ``Idempotency-Key`` replay, a 413) are matched against the OpenAPI path templates; a path no
  route takes is ``unmatched``.
- **identification** (``POST /v1/payments``): :func:`identification` counts each outcome
  (:data:`OUTCOMES`), :func:`decision_score` observes the fused score of the best candidate.
- **frames**: :func:`frame` counts every analysed image by pipeline status, by the route it came
  through (a checkout, an enrollment, the kiosk's capture helper) and by failed quality gate.
- **at scrape time** (:class:`StateCollector`): the index size, the open-set threshold for it
  and N_safe, the replica's position and lag (when the app has a replica), the webhook queue
  (a COUNT on ``webhook_deliveries``) and whether that query reached the database.

Several worker processes (``palmpay serve --workers N``) share one port, so a scrape reaches
one of them at random: with ``PROMETHEUS_MULTIPROC_DIR`` set (an empty folder, cleared before
the server starts) prometheus-client keeps every process's counters and histograms in files
there and :func:`render` merges them. Per-process values (index size, threshold, replica lag,
resident memory) are then gauges with a ``pid`` label that every worker's :class:`Publisher`
refreshes every ``metrics_refresh_s``; the files of dead workers' gauges are removed. Without
the variable, one process answers for itself (and adds prometheus-client's ``process_*`` and
``python_*`` metrics).

Nothing here carries a customer id, a card, a key or a raw path: labels take only values from
fixed sets or route templates.
"""

from palmpay.api.telemetry.recording import (
    OUTCOMES,
    RequestMetricsMiddleware,
    decision_score,
    frame,
    identification,
    multiprocess_dir,
    no_palm_counted,
    route_of,
)
from palmpay.api.telemetry.scrape import (
    Publisher,
    Snapshot,
    StateCollector,
    reap_dead_workers,
    render,
    snapshot,
)

__all__ = ["OUTCOMES", "Publisher", "RequestMetricsMiddleware", "Snapshot", "StateCollector",
           "decision_score", "frame", "identification", "multiprocess_dir", "no_palm_counted",
           "reap_dead_workers", "render", "route_of", "snapshot"]
