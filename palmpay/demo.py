"""``palmpay demo``: the whole product on the embedded default, from the seed data.

1. Starts the API (SQLite in ``data/demo``, bundled models, dev-mode keyring) on a local port.
2. Creates a kiosk and a terminal API key, and enrolls the seed customers through
   ``POST /v1/customers`` (their synthetic palm photos + the networks' public test cards).
3. Acts as a checkout terminal on the recorded seed video: the terminal's own hand tracker cuts
   the video into presentations and picks each one's good frames, which it sends with an amount
   to ``POST /v1/payments``; prints each authorised payment or refusal.
4. Prints the kiosk URLs and keeps serving until Ctrl-C (``--no-serve`` stops here).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np

from palmpay import assets
from palmpay.api.app import create_app
from palmpay.api.keys import create_api_key
from palmpay.api.threaded import serve_in_thread
from palmpay.capture import open_source
from palmpay.config import Settings
from palmpay.recognizer import Presentation, Recognizer

__all__ = ["DemoResult", "SEEDS_DIR", "run_demo"]

log = logging.getLogger(__name__)

SEEDS_DIR = assets.path("seeds")  # customers.json, gallery/<handle>/*.jpg, the checkout video


@dataclass(frozen=True)
class DemoResult:
    """What the checkout part of the demo did: one entry per presentation in the video."""

    enrolled: dict[str, str]  # seed handle -> customer id
    outcomes: list[dict]  # per presentation: the payment JSON, or the problem JSON


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def _presentations(video: Path) -> list[tuple[Presentation, list[np.ndarray]]]:
    """The terminal side: cut the video into presentations and keep each one's good frames."""
    with open_source(video) as source:
        frames = list(source)
    images = {frame.index: frame.image for frame in frames}
    terminal = Recognizer()  # nothing enrolled: used only to track hands and pick good frames
    return [(item, [images[i] for i in item.good_frames])
            for item in terminal.replay(frames) if isinstance(item, Presentation)]


def _say(line: str) -> None:
    print(line, flush=True)  # noqa: T201 - the demo's output is for the person watching


def run_demo(host: str = "127.0.0.1", port: int = 8000, serve: bool = True,
             data_dir: Path = Path("data/demo")) -> DemoResult:
    """Run the demo (see the module docstring); returns what happened at checkout."""
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = Settings(data_dir=data_dir, database_url=None, dev_mode=True)
    seeds = json.loads((SEEDS_DIR / "customers.json").read_text())
    app = create_app(settings)
    with serve_in_thread(app, host, port, start_timeout_s=60) as base:
        db = app.state.palmpay.db
        _, kiosk_key = create_api_key(db, "demo kiosk", "kiosk")
        _, terminal_key = create_api_key(db, "demo checkout terminal", "terminal")
        _say(f"PalmPay API on {base} (OpenAPI: {base}/docs), SQLite in {data_dir}/")
        enrolled = {}
        with httpx.Client(base_url=base, timeout=60) as client:
            for customer in seeds["customers"]:
                photos = sorted((SEEDS_DIR / "gallery" / customer["handle"]).iterdir())
                card = customer["card"]
                response = client.post(
                    "/v1/customers",
                    headers={"Authorization": f"Bearer {kiosk_key}",
                             "Idempotency-Key": f"demo-enroll-{customer['handle']}"},
                    data={"name": customer["name"], "card_number": card["number"],
                          "exp_month": str(card["exp_month"]), "exp_year": str(card["exp_year"]),
                          "consent": "true"},
                    files=[("images", (p.name, p.read_bytes(), "image/jpeg")) for p in photos],
                )
                body = response.json()
                if response.status_code != 201:
                    raise RuntimeError(f"enrolling {customer['handle']} failed: {body}")
                enrolled[customer["handle"]] = body["id"]
                _say(f"enrolled {customer['name']:<18} {body['id']}  "
                     f"{body['card']['brand']} ••••{body['card']['last4']}  "
                     f"({body['templates']} palm templates)")

            point = app.state.palmpay.palms.operating_point()
            _say(f"decision threshold {point['threshold']:.4f} for {point['enrolled_samples']} "
                 f"palm samples (target: at most 1 stranger in "
                 f"{1 / point['target_fpir']:,.0f} charged to anyone); past N_safe = "
                 f"{point['n_safe']:,} samples, payments ask for 4 phone digits")
            video = SEEDS_DIR / seeds["checkout_video"]["file"]
            _say(f"checkout terminal replaying {video.name}:")
            names = {enrolled[c["handle"]]: c["name"] for c in seeds["customers"]}
            outcomes = []
            plans = seeds["checkout_video"]["presentations"]
            for (presentation, frames), plan in zip(_presentations(video), plans, strict=False):
                span = f"frames {presentation.first_frame}-{presentation.last_frame}"
                if not frames:
                    _say(f"  presentation {presentation.presentation} ({span}): no usable palm")
                    outcomes.append({"code": "no_palm"})
                    continue
                response = client.post(
                    "/v1/payments",
                    headers={"Authorization": f"Bearer {terminal_key}",
                             "Idempotency-Key": f"demo-pay-{presentation.presentation}"},
                    data={"amount": str(plan["amount"]), "currency": plan["currency"]},
                    files=[("frames", (f"{i}.jpg", _jpeg(f), "image/jpeg"))
                           for i, f in enumerate(frames)],
                )
                body = response.json()
                outcomes.append(body)
                money = f"{plan['amount'] / 100:.2f} {plan['currency'].upper()}"
                if response.status_code == 201:
                    method = body["payment_method"]
                    _say(f"  presentation {presentation.presentation} ({span}): PAID {money} — "
                         f"{names.get(body['customer'], body['customer'])} "
                         f"{method['brand']} ••••{method['last4']}  {body['id']} "
                         f"{body['status']}")
                else:
                    _say(f"  presentation {presentation.presentation} ({span}): REFUSED {money} "
                         f"— {body.get('code')}: {body.get('detail')}")
        _say(f"kiosk enrollment: {base}/kiosk/enroll#key={kiosk_key}")
        _say(f"kiosk checkout:   {base}/kiosk/checkout#key={terminal_key}")
        if serve:
            _say("serving until Ctrl-C")
            try:
                while True:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                _say("stopping")
        return DemoResult(enrolled, outcomes)
