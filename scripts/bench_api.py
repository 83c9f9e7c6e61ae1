"""HTTP benchmark of the payment path (``make bench`` writes docs/bench_api.md).

Starts the real API (uvicorn on 127.0.0.1, SQLite in a temporary folder, dev-mode keyring),
enrolls synthetic customers over HTTP, then times, request by request from a client on the same
machine:

- ``POST /v1/capture/analyze`` with one 640x480 JPEG frame (what the kiosk sends ~3x a second);
- ``POST /v1/payments`` with 4 frames of an enrolled palm (identify + authorise + capture):
  the shopper's time to approval, minus the camera;
- ``POST /v1/payments`` with 4 frames of a palm nobody enrolled (``palm_not_recognised``), whose
  time should match the recognised case (an unknown palm must not be told apart by timing);
- the same with PostgreSQL (``--pg-url``, default the local test database, a fresh schema) when
  it is reachable.

    .venv/bin/python scripts/bench_api.py --out docs/bench_api.md [--quick]

Timing (no warm-up; median and p90 of the wall-clock time per request), the command line and
the report come from ``scripts/benchlib``, as for ``scripts/bench.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import cv2
import httpx
import numpy as np
from benchlib.harness import REPO, Run, measure, write_report
from benchlib.report import api_report
from benchlib.results import ApiResults, ApiRow

from palmpay import synth
from palmpay.api.app import create_app
from palmpay.api.keys import create_api_key
from palmpay.api.threaded import serve_in_thread
from palmpay.config import Settings
from palmpay.payments.cards import luhn_complete

__all__ = ["main"]

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def card_number(i: int) -> str:
    """A distinct Luhn-valid Visa-range number per customer (the simulated acquirer approves)."""
    return luhn_complete(f"424299{i:09d}")


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def frames_of(seed: int, n: int, pose_seed: int) -> list[bytes]:
    rng = np.random.default_rng(pose_seed)
    identity = synth.HandIdentity.from_seed(seed)
    calm = synth.VariationRanges(blur_sigma=(0.0, 0.6), noise_std=(1.0, 3.0))
    return [jpeg(synth.render_hand(identity, synth.Variation.random(rng, calm, size=(640, 480))))
            for _ in range(n)]


def expect_status(label: str, status: int) -> Callable[[httpx.Response], None]:
    """A :func:`measure` check: every timed response must have ``status``."""

    def check(response: httpx.Response) -> None:
        if response.status_code != status:
            raise SystemExit(f"{label}: expected {status}, got {response.status_code} "
                             f"{response.text}")

    return check


#: The benchmark times the payment path itself: one terminal sends every request, so the abuse
#: controls (palmpay/api/ratelimit.py, the unrecognised-palm lock-out) are set out of its way.
BENCH_LIMITS = {"rate_limit_requests": "1000000/minute", "rate_limit_payments": "1000000/minute",
                "rate_limit_customers": "1000000/minute", "unrecognised_max_failures": 1000000}


def bench_backend(name: str, settings: Settings, customers: int, runs: int) -> list[ApiRow]:
    app = create_app(settings.model_copy(update=BENCH_LIMITS))
    with serve_in_thread(app) as base:
        db = app.state.palmpay.db
        _, kiosk = create_api_key(db, "bench kiosk", "kiosk")
        _, terminal = create_api_key(db, "bench terminal", "terminal")
        client = httpx.Client(base_url=base, timeout=60)
        for i in range(customers):
            photos = frames_of(500 + i, 4, pose_seed=i)
            r = client.post("/v1/customers", headers={"Authorization": f"Bearer {kiosk}"},
                            data={"name": f"Customer {i}", "card_number": card_number(i),
                                  "exp_month": "12", "exp_year": "2031", "consent": "true"},
                            files=[("images", (f"{k}.jpg", p, "image/jpeg"))
                                   for k, p in enumerate(photos)])
            if r.status_code != 201:
                raise SystemExit(f"enrolling customer {i} failed: {r.text}")
        one = frames_of(500, 1, pose_seed=99)[0]
        known = frames_of(500, 4, pose_seed=100)
        stranger = frames_of(9999, 4, pose_seed=101)
        term = {"Authorization": f"Bearer {terminal}"}

        def analyze(_: object) -> httpx.Response:
            return client.post("/v1/capture/analyze", headers=term,
                               files={"image": ("f.jpg", one, "image/jpeg")})

        def pay(frames: list[bytes]) -> Callable[[object], httpx.Response]:
            return lambda _: client.post(
                "/v1/payments", headers=term, data={"amount": "100", "currency": "eur"},
                files=[("frames", (f"{k}.jpg", f, "image/jpeg")) for k, f in enumerate(frames)])

        rows = [
            ApiRow(name, label, measure(call, [None], runs, warmup=0,
                                        check=expect_status(label, expect)))
            for label, call, expect in (
                ("`POST /v1/capture/analyze`, 1 frame", analyze, 200),
                ("`POST /v1/payments`, 4 frames, enrolled palm → succeeded", pay(known), 201),
                ("`POST /v1/payments`, 4 frames, unknown palm → palm_not_recognised",
                 pay(stranger), 422),
            )
        ]
        client.close()
        return rows


def pg_admin_url(url: str) -> str:
    """The SQLAlchemy URL as psycopg takes it."""
    return url.replace("+psycopg", "")


def pg_settings(url: str, data_dir: Path) -> tuple[Settings, str] | None:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(pg_admin_url(url), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError:
        return None
    return Settings(data_dir=data_dir, dev_mode=True,
                    database_url=f"{url}?options=-csearch_path%3D{schema}"), schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench_api.md")
    parser.add_argument("--quick", action="store_true", help="few customers and runs")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args(argv)
    customers, runs = (3, 5) if args.quick else (20, 30)
    run = Run.start(__file__, argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += bench_backend("SQLite", Settings(data_dir=Path(tmp) / "sqlite", dev_mode=True,
                                                 database_url=None), customers, runs)
        pg = pg_settings(args.pg_url, Path(tmp) / "pg")
        if pg is not None:
            settings, schema = pg
            try:
                rows += bench_backend("PostgreSQL", settings, customers, runs)
            finally:
                import psycopg

                with psycopg.connect(pg_admin_url(args.pg_url), autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    write_report(api_report(run, ApiResults(customers, runs, rows)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
