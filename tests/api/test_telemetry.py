"""``GET /metrics``: real requests through the app move the right series by the right amounts.

Counters are process-wide (prometheus-client), so every test compares two scrapes. Runs on
SQLite and on PostgreSQL (``db_url``). The multi-process test runs workers as subprocesses
with ``PROMETHEUS_MULTIPROC_DIR`` (read when prometheus-client is imported).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, select, update

from palmpay.api import telemetry
from palmpay.api.models import WebhookDelivery, WebhookEndpoint
from palmpay.api.telemetry.recording import SCORE_BUCKETS
from palmpay.api.threaded import serve_in_thread
from palmpay.api.webhooks import record_event
from palmpay.payments.models import PalmTemplate
from tests.api.conftest import CARDS, assert_problem, make_app, make_settings

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value (0 when absent); with labels left out, the sum over them."""
    return sum(v for (n, lab), v in samples.items()
               if n == name and set(labels.items()) <= set(lab))


def scrape(api, **headers: str) -> Samples:
    r = api.client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == PROMETHEUS_TEXT
    return parse(r.text)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_payments_move_outcomes_scores_latency_and_frames(api_factory, empty_frames):
    api = api_factory(metrics_public=True)
    before = scrape(api)
    customers = [api.enroll(who, card).json()["id"] for who, card in
                 (("ann", "visa"), ("bob", "mastercard"))]
    held = api.pay("ann", 3000, capture_method="manual")
    assert held.status_code == 201, held.text
    payment = held.json()["id"]
    assert api.client.post(f"/v1/payments/{payment}/capture", json={},
                           headers=api.auth("terminal")).status_code == 200
    assert api.client.get(f"/v1/payments/{payment}",
                          headers=api.auth("terminal")).status_code == 200
    assert_problem(api.pay("stranger"), 422, "palm_not_recognised")
    assert_problem(api.pay(frames=empty_frames), 422, "palm_not_found")
    with api.state.db.session() as s:  # templates purged in the database, still indexed here
        s.execute(delete(PalmTemplate).where(PalmTemplate.customer_id == customers[1]))
    assert_problem(api.pay("bob"), 422, "palm_not_recognised")
    assert api.client.get("/v1/no/such/path/pay_x").status_code == 404
    r = api.client.get("/metrics")
    after = parse(r.text)

    for outcome, moved in (("matched", 1), ("refused_below_threshold", 1), ("no_palm", 1),
                           ("unpayable_candidate", 1), ("narrowing_required", 0),
                           ("presentation_attack", 0)):
        assert delta(before, after, "palmpay_identifications_total", outcome=outcome,
                     narrowed="false") == moved, outcome
    # A score for every search (not for the payment whose frames had no palm).
    assert delta(before, after, "palmpay_identification_score_count", narrowed="false") == 3
    threshold = value(after, "palmpay_open_set_threshold")
    assert 0 < threshold < 1
    # ann and the purged bob reached the threshold; the stranger did not.
    assert delta(before, after, "palmpay_identification_score_count", accepted="true") == 2
    assert delta(before, after, "palmpay_identification_score_count", accepted="false") == 1
    below = max(b for b in SCORE_BUCKETS if b < threshold)  # no accepted score under it
    assert delta(before, after, "palmpay_identification_score_bucket", accepted="true",
                 le=str(below)) == 0

    def requests(route: str, method: str, status: str) -> float:
        return delta(before, after, "palmpay_http_request_duration_seconds_count",
                     route=route, method=method, status=status)

    assert requests("/v1/customers", "POST", "2xx") == 2
    assert requests("/v1/payments", "POST", "2xx") == 1
    assert requests("/v1/payments", "POST", "4xx") == 3
    assert requests("/v1/payments/{payment_id}/capture", "POST", "2xx") == 1
    assert requests("/v1/payments/{payment_id}", "GET", "2xx") == 1
    assert requests("unmatched", "GET", "4xx") == 1
    assert requests("/metrics", "GET", "2xx") == 1  # the first scrape
    routes = {dict(lab).get("route") for (_, lab) in after}
    assert not any(r and ("pay_" in r or "cus_" in r or "/no/such" in r) for r in routes)

    # Every enrollment image is analysed; checkouts analyse at most the frames sent.
    assert delta(before, after, "palmpay_frames_total", route="/v1/customers") == 8
    checkout = delta(before, after, "palmpay_frames_total", route="/v1/payments")
    assert 4 <= checkout <= 3 * 3 + len(empty_frames)
    assert delta(before, after, "palmpay_frames_total", route="/v1/payments",
                 status="no_hand") >= 1
    assert value(after, "palmpay_index_customers") == api.state.palms.customers == 2
    assert value(after, "palmpay_index_samples") == api.state.palms.samples
    assert value(after, "palmpay_database_up") == 1
    assert value(after, "palmpay_build_info", backend=api.state.db.backend) == 1

    # Nothing that identifies a customer, a payment, a card or a key.
    for secret in [*customers, payment, *api.keys.values(), *CARDS.values(), "Ann", "Bob"]:
        assert secret not in r.text, secret


def test_narrowed_searches_are_labelled(api_factory):
    api = api_factory(metrics_public=True, n_safe=0)
    assert api.enroll("ann", "visa", phone_last4="4321").status_code == 201
    before = scrape(api)
    assert_problem(api.pay("ann"), 428, "narrowing_required")
    assert api.pay("ann", phone_last4="4321").status_code == 201
    after = scrape(api)
    assert delta(before, after, "palmpay_identifications_total", outcome="narrowing_required",
                 narrowed="false") == 1
    assert delta(before, after, "palmpay_identifications_total", outcome="matched",
                 narrowed="true") == 1
    assert delta(before, after, "palmpay_identification_score_count", narrowed="true") == 1
    assert value(after, "palmpay_narrowing_required") == 1
    assert value(after, "palmpay_open_set_n_safe_samples") == 0


def test_webhook_queue_depth(api_factory):
    api = api_factory(metrics_public=True, webhook_allow_private=True)
    api.state.dispatcher.stop()  # nothing is sent: the queue only grows
    r = api.client.post("/v1/webhook_endpoints", json={"url": "http://127.0.0.1:9/hook"},
                        headers=api.auth("admin"))
    assert r.status_code == 201, r.text
    with api.state.db.session(readonly=True) as s:
        merchant = s.scalar(select(WebhookEndpoint.merchant_id))
    before = scrape(api)
    for n in range(3):
        record_event(api.state.db, "customer.created", {"n": n}, merchant, now=api.clock())
    with api.state.db.session() as s:
        first = s.scalar(select(WebhookDelivery.id).order_by(WebhookDelivery.id))
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id == first)
                  .values(attempts=1))
    api.clock.advance(seconds=120)
    after = scrape(api)
    assert delta(before, after, "palmpay_webhook_deliveries_pending") == 3
    assert value(after, "palmpay_webhook_deliveries_retrying") == 1
    assert value(after, "palmpay_webhook_deliveries_failed") == 0
    assert 120 <= value(after, "palmpay_webhook_oldest_pending_age_seconds") < 3600


def test_who_may_scrape(api_factory):
    api = api_factory()  # default: loopback clients only; the TestClient is not one
    body = assert_problem(api.client.get("/metrics", headers=api.auth("admin")), 403,
                          "forbidden")
    assert "PALMPAY_METRICS_TOKEN" in body["detail"]
    assert "/metrics" not in api.client.get("/openapi.json").json()["paths"]

    api = api_factory(metrics_token="scrape-me-9f2c")
    assert_problem(api.client.get("/metrics"), 401, "unauthorized")
    assert_problem(api.client.get("/metrics", headers=api.auth("admin")), 401, "unauthorized")
    assert_problem(api.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}),
                   401, "unauthorized")
    text = api.client.get("/metrics", headers={"Authorization": "Bearer scrape-me-9f2c"})
    assert text.status_code == 200 and text.headers["content-type"] == PROMETHEUS_TEXT
    assert "scrape-me" not in text.text
    open_metrics = api.client.get("/metrics", headers={
        "Authorization": "Bearer scrape-me-9f2c", "Accept": "application/openmetrics-text"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")


def test_a_loopback_client_may_scrape_without_a_token(db_url, tmp_path, models):
    app = make_app(make_settings(db_url, tmp_path), models)
    with serve_in_thread(app) as base_url:  # on 127.0.0.1
        r = httpx.get(f"{base_url}/metrics", timeout=30)
    assert r.status_code == 200, r.text
    assert value(parse(r.text), "palmpay_index_customers") == 0


def test_frames_count_failed_quality_gates():
    before = parse(telemetry.render(None)[0].decode())
    quality = SimpleNamespace(problems=("blurred", "too_dark", "something_new"))
    frame = SimpleNamespace(status="low_quality", quality=quality)
    analysis = SimpleNamespace(frame=frame)
    assert telemetry.frame(analysis) is analysis  # type: ignore[arg-type]
    after = parse(telemetry.render(None)[0].decode())
    assert delta(before, after, "palmpay_frames_total", route="none", status="low_quality") == 1
    for gate in ("blurred", "too_dark", "other"):
        assert delta(before, after, "palmpay_frame_quality_failures_total", route="none",
                     gate=gate) == 1


_WORKER = textwrap.dedent("""
    import json, sys
    from types import SimpleNamespace
    from palmpay.api import telemetry
    samples, render = int(sys.argv[1]), sys.argv[2] == "render"
    palms = SimpleNamespace(samples=samples, customers=samples // 4, operating_point=lambda: {
        "threshold": 0.63, "n_safe": 5000, "narrowing_required": False})
    state = SimpleNamespace(palms=palms, replica=SimpleNamespace(position=7, lag_seconds=0.5),
                            settings=SimpleNamespace(metrics_refresh_s=60.0))
    telemetry.identification("matched")
    telemetry.Publisher(state).publish()
    if render:
        print(telemetry.render(None)[0].decode())
""")


def test_multiprocess_mode_merges_workers_and_forgets_dead_ones(tmp_path: Path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}

    def worker(samples: int, render: bool) -> str:
        done = subprocess.run([sys.executable, "-c", _WORKER, str(samples),
                               "render" if render else "-"], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    worker(40, render=False)  # a worker that has exited since
    samples = parse(worker(80, render=True))
    assert value(samples, "palmpay_identifications_total", outcome="matched") == 2  # both
    gauges = {lab: v for (n, lab), v in samples.items() if n == "palmpay_index_samples"}
    assert list(gauges.values()) == [80.0]  # the dead worker's gauge is gone
    assert [dict(lab).keys() for lab in gauges] == [{"pid"}]
    assert value(samples, "palmpay_replica_lag_seconds") == 0.5
    assert value(samples, "palmpay_replica_position") == 7
    assert value(samples, "process_resident_memory_bytes") > 0
    # The rendering worker has exited too: its live gauges go, the counters stay.
    assert len(telemetry.reap_dead_workers(folder)) == 1
    assert not list(folder.glob("gauge_live*")) and list(folder.glob("counter_*"))


_SERVE = "import sys; from palmpay.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_answer_one_consistent_scrape(db_url, tmp_path: Path):
    """``palmpay serve --workers 2`` with PROMETHEUS_MULTIPROC_DIR: whichever worker answers,
    the scrape counts every worker's requests and lists both workers' index gauges."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PALMPAY_DATABASE_URL": db_url, "PALMPAY_DEV_MODE": "true",
           "PALMPAY_DATA_DIR": str(tmp_path / "data"), "PROMETHEUS_MULTIPROC_DIR": str(folder),
           "PALMPAY_METRICS_REFRESH_S": "0.2"}
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "server.log").open("wb") as out:
        server = subprocess.Popen([sys.executable, "-c", _SERVE, "serve", "--port", str(port),
                                   "--workers", "2"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        def scrape_text() -> str:
            r = httpx.get(f"{base}/metrics", timeout=30)  # loopback: no token needed
            assert r.status_code == 200 and r.headers["content-type"] == PROMETHEUS_TEXT
            return r.text

        def workers() -> int:
            return len([k for k in parse(scrape_text()) if k[0] == "palmpay_index_samples"])

        deadline = time.monotonic() + 180
        while True:  # both workers up: each has published its gauges
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if workers() == 2:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        first = value(parse(scrape_text()), "palmpay_http_request_duration_seconds_count",
                      route="/healthz")
        for _ in range(12):
            assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
        counts = {value(parse(scrape_text()), "palmpay_http_request_duration_seconds_count",
                        route="/healthz") for _ in range(8)}
        assert counts == {first + 12}
        pids = {dict(lab)["pid"] for (n, lab) in parse(scrape_text())
                if n == "palmpay_index_samples"}
        assert len(pids) == 2 and str(server.pid) not in pids
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    assert not list(folder.glob("gauge_live*"))  # workers that stopped leave no live gauge
