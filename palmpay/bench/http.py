"""HTTP under load: a real ``palmpay serve`` subprocess, an asyncio + httpx load generator here.

:func:`http_rows` starts the API as its own process (``python -m palmpay.cli serve`` on a free
loopback port, dev-mode keyring, the database of ``settings``; the abuse controls — rate limits,
the unrecognised-palm lock-out, the simulated card limit — set out of the way, since one
terminal sends every request), enrolls synthetic customers over HTTP (4 photos each) and then,
from this process:

- **pay**: ``POST /v1/payments`` with 4 JPEG frames (640×480) of an enrolled palm held over
  the camera (:func:`presentation`), at each
  concurrency level, bounded by a request count and a time limit; the server's CPU seconds
  (``/proc``, the server and its children) over the level, per request;
- **capture** and **refund**: ``POST /v1/payments/{id}/capture`` and ``POST /v1/refunds`` of
  payments authorised beforehand through the same database (manual capture, resp. captured), at
  concurrency 1 and the highest level.

Every request that does not answer its expected status counts as an error (kept out of the
latencies).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from palmpay.bench.harness import REPO, Timing, process_cpu_s
from palmpay.bench.results import HttpRow

__all__ = ["HttpPlan", "hand_frames", "http_rows", "presentation"]

#: Environment that takes the abuse controls out of a one-terminal benchmark's way.
BENCH_ENV = {"PALMPAY_RATE_LIMIT_REQUESTS": "100000000/minute",
             "PALMPAY_RATE_LIMIT_PAYMENTS": "100000000/minute",
             "PALMPAY_RATE_LIMIT_CUSTOMERS": "100000000/minute",
             "PALMPAY_UNRECOGNISED_MAX_FAILURES": "100000000",
             "PALMPAY_SIM_CARD_LIMIT": "0"}


@dataclass(frozen=True)
class HttpPlan:
    """How much the HTTP benchmark sends."""

    customers: int
    concurrency: tuple[int, ...]
    pay_requests: int  # per level, at most
    pay_seconds: float  # per level, at most
    money_requests: int  # capture / refund at the highest level, at most
    money_seconds: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(settings: Any, log_path: Path, extra_env: dict[str, str] | None = None
           ) -> Iterator[tuple[str, int]]:
    """``palmpay serve`` on ``settings`` in a subprocess; yields (base URL, pid)."""
    import httpx

    port = _free_port()
    env = {**os.environ, **BENCH_ENV, **(extra_env or {}),
           "PALMPAY_DATA_DIR": str(settings.data_dir), "PALMPAY_DEV_MODE": "true",
           "PALMPAY_DATABASE_URL": settings.resolved_database_url()}
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "palmpay.cli", "serve", "--host",
                                 "127.0.0.1", "--port", str(port)], cwd=REPO, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"palmpay serve exited {proc.returncode}; see {log_path}")
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"palmpay serve did not answer in 180 s; see {log_path}")
            time.sleep(0.5)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _jpeg(image: np.ndarray) -> bytes:
    import cv2

    return bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())


def hand_frames(seed: int, n: int, pose_seed: int) -> list[bytes]:
    """``n`` 640×480 JPEG frames of synthetic hand ``seed`` in calm random poses."""
    from palmpay import synth

    rng = np.random.default_rng(pose_seed)
    identity = synth.HandIdentity.from_seed(seed)
    calm = synth.VariationRanges(blur_sigma=(0.0, 0.6), noise_std=(1.0, 3.0))
    return [_jpeg(synth.render_hand(identity, synth.Variation.random(rng, calm, size=(640, 480))))
            for _ in range(n)]


def presentation(seed: int, n: int, pose_seed: int) -> list[bytes]:
    """``n`` 640×480 JPEG frames of synthetic hand ``seed`` held over the camera: one pose with
    a tremor (:func:`palmpay.synth.presentation_frames`, hold phase), as the frames of one
    checkout are (the pay route tracks the hand across them)."""
    from palmpay import synth

    frames = synth.presentation_frames(synth.HandIdentity.from_seed(seed), n, seed=pose_seed,
                                       enter_fraction=0.0, leave_fraction=0.0)
    return [_jpeg(frame) for frame in frames]


Request = tuple[str, str, dict[str, Any], int]  # method, path, httpx kwargs, expected status


async def _load(base: str, make: Callable[[int], Request], concurrency: int, count: int,
                seconds: float) -> tuple[list[float], int, float]:
    import httpx

    latencies: list[float] = []
    errors, issued = 0, 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal errors, issued
            while issued < count and time.perf_counter() < deadline:
                method, path, kwargs, expect = make(issued)
                issued += 1
                t0 = time.perf_counter()
                response = await client.request(method, path, **kwargs)
                if response.status_code == expect:
                    latencies.append(1000 * (time.perf_counter() - t0))
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - start


def level(database: str, request: str, base: str, pid: int, make: Callable[[int], Request],
          concurrency: int, count: int, seconds: float) -> HttpRow:
    """One load level: ``count`` requests at most, ``seconds`` at most."""
    cpu0 = process_cpu_s(pid)
    latencies, errors, elapsed = asyncio.run(_load(base, make, concurrency, count, seconds))
    done = len(latencies) + errors
    cpu_ms = 1000 * (process_cpu_s(pid) - cpu0) / max(done, 1)
    return HttpRow(database, request, concurrency, len(latencies), errors, elapsed,
                   Timing(latencies), cpu_ms)


def _enroll(base: str, kiosk: str, customers: int) -> list[str]:
    import httpx

    from palmpay.bench.durable import card

    ids = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for i in range(customers):
            c = card(10_000 + i)
            r = client.post("/v1/customers", headers={"Authorization": f"Bearer {kiosk}"},
                            data={"name": f"Customer {i}", "card_number": c.number,
                                  "exp_month": "12", "exp_year": "2031", "consent": "true"},
                            files=[("images", (f"{k}.jpg", p, "image/jpeg"))
                                   for k, p in enumerate(hand_frames(500 + i, 4, i))])
            if r.status_code != 201:
                raise RuntimeError(f"enrolling customer {i} failed: {r.status_code} {r.text}")
            ids.append(r.json()["id"])
    return ids


def http_rows(database: str, settings: Any, plan: HttpPlan, log_path: Path) -> list[HttpRow]:
    """Every HTTP row of one database (module docstring)."""
    from palmpay.api.keys import create_api_key
    from palmpay.payments.service import build_service

    rows: list[HttpRow] = []
    with served(settings, log_path) as (base, pid):
        service = build_service(settings.model_copy(update={"sim_card_limit": 0}))
        _, kiosk = create_api_key(service.db, "bench kiosk", "kiosk")
        terminal_view, terminal = create_api_key(service.db, "bench terminal", "terminal")
        customers = _enroll(base, kiosk, plan.customers)
        frames = [presentation(500 + i, 4, 1000 + i) for i in range(plan.customers)]
        auth = {"Authorization": f"Bearer {terminal}"}

        def pay(i: int) -> Request:
            files = [("frames", (f"{k}.jpg", f, "image/jpeg"))
                     for k, f in enumerate(frames[i % len(frames)])]
            return "POST", "/v1/payments", {"headers": auth, "files": files,
                                            "data": {"amount": "100", "currency": "eur"}}, 201

        level(database, "warm-up", base, pid, pay, 1, 3, 60)
        for c in plan.concurrency:
            rows.append(level(database, "pay by palm (4 frames)", base, pid, pay, c,
                              plan.pay_requests, plan.pay_seconds))
        top = max(plan.concurrency)
        for request, method in (("capture", "manual"), ("refund", "automatic")):
            for c, count in ((1, max(10, plan.money_requests // 8)), (top, plan.money_requests)):
                ids = [service.authorize(customers[n % len(customers)], 100, "eur", method,
                                         terminal=terminal_view.id).id for n in range(count)]

                def money(i: int, ids: list[str] = ids, request: str = request) -> Request:
                    if request == "capture":
                        return "POST", f"/v1/payments/{ids[i]}/capture", {
                            "headers": auth, "json": {}}, 200
                    return "POST", "/v1/refunds", {"headers": auth,
                                                   "json": {"payment": ids[i]}}, 201

                rows.append(level(database, request, base, pid, money, c, count,
                                  plan.money_seconds))
        service.db.dispose()
    return rows


def temp_log() -> Path:
    """A log file for the server's output (kept for a failed run)."""
    fd, name = tempfile.mkstemp(prefix="palmpay-bench-serve-", suffix=".log")
    os.close(fd)
    return Path(name)
