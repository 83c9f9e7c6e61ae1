"""API fixtures: synthetic hands rendered once per session, an app per test on each backend.

Images: every identity gets ``ENROLL`` photos (PNG, each a different pose/lighting draw) and
``PROBE`` checkout frames (JPEG, other draws of the same hand). Rendering is the expensive part
(~0.5-1 s per new identity), so it happens once per session.

``api`` builds a fresh app (fresh database on SQLite and on PostgreSQL via ``db_url``, fresh
keyring in dev mode under ``tmp_path``) with a kiosk, a terminal and an admin key, and enters
its lifespan with ``TestClient``. The ONNX models are loaded once per session and shared; each
app gets its own palm index.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from palmpay import synth
from palmpay.api.app import create_app
from palmpay.api.deps import AppState
from palmpay.api.keys import create_api_key
from palmpay.config import Settings
from palmpay.embed import PalmEmbedder
from palmpay.recognizer import Recognizer
from palmpay.roi import PalmRoiExtractor
from tests.dbfixtures import db_url  # noqa: F401  (pytest fixture)

ENROLL = 4
PROBE = 3
#: Synthetic people: enrolled in tests under these names.
SEEDS = {"ann": 11, "bob": 12, "cat": 13, "dan": 14, "stranger": 77}
#: Cards (all Luhn-valid; the simulated acquirer declines the two special ones).
CARDS = {
    "visa": "4242424242424242",
    "mastercard": "5555555555554444",
    "amex": "378282246310005",
    "discover": "6011111111111117",
    "declined": "4000000000000002",
    "insufficient": "4000000000009995",
}


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


@dataclass(frozen=True)
class Hand:
    enroll: list[bytes]
    probe: list[bytes]


@pytest.fixture(scope="session")
def hands() -> dict[str, Hand]:
    out = {}
    for name, seed in SEEDS.items():
        identity = synth.HandIdentity.from_seed(seed)
        rng = np.random.default_rng(1000 + seed)
        images = [
            synth.render_hand(identity, synth.Variation.random(rng, synth.TEST_RANGES,
                                                               size=(640, 480)))
            for _ in range(ENROLL + PROBE)
        ]
        out[name] = Hand([_png(i) for i in images[:ENROLL]], [_jpeg(i) for i in images[ENROLL:]])
    return out


@pytest.fixture(scope="session")
def empty_frames() -> list[bytes]:
    """Frames without a hand."""
    return [_jpeg(synth.render_no_hand(seed, (640, 480))) for seed in (1, 2, 3)]


@pytest.fixture(scope="session")
def models() -> tuple[PalmRoiExtractor, PalmEmbedder]:
    settings = Settings()
    return PalmRoiExtractor(settings), PalmEmbedder(settings)


class FakeClock:
    """A settable UTC clock for ``create_app(clock=...)``."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


def make_settings(url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", dev_mode=True, database_url=url,
                    **overrides)


def make_app(settings: Settings, models: tuple[PalmRoiExtractor, PalmEmbedder],
             clock: FakeClock | None = None) -> FastAPI:
    extractor, embedder = models
    return create_app(settings, clock=clock,
                      recognizer=Recognizer(settings, extractor=extractor, embedder=embedder))


@dataclass
class Api:
    """A running app and its keys; helpers build the multipart requests."""

    client: TestClient
    app: FastAPI
    settings: Settings
    clock: FakeClock
    hands: dict[str, Hand]
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> AppState:
        return self.app.state.palmpay

    def auth(self, scope: str, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}", **headers}

    def new_key(self, scope: str, name: str = "extra") -> str:
        return create_api_key(self.state.db, name, scope)[1]

    def enroll(self, who: str, card: str = "visa", *, images: list[bytes] | None = None,
               consent: str | None = "true", key: str = "kiosk", headers: dict | None = None,
               **fields: str):
        data = {"name": who.capitalize(), "card_number": CARDS.get(card, card),
                "exp_month": "12", "exp_year": "2031", **fields}
        if consent is not None:
            data["consent"] = consent
        files = [("images", (f"{who}{n}.png", blob, "image/png"))
                 for n, blob in enumerate(self.hands[who].enroll if images is None else images)]
        return self.client.post("/v1/customers", data=data, files=files,
                                headers=self.auth(key, **(headers or {})))

    def pay(self, who: str | None = None, amount: int = 1250, *, frames: list[bytes] | None = None,
            key: str = "terminal", headers: dict | None = None, **fields: str):
        blobs = self.hands[who].probe if frames is None else frames
        files = [("frames", (f"frame{n}.jpg", blob, "image/jpeg")) for n, blob in enumerate(blobs)]
        data = {"amount": str(amount), "currency": "eur", **fields}
        return self.client.post("/v1/payments", data=data, files=files,
                                headers=self.auth(key, **(headers or {})))

    def count(self, model: type) -> int:
        with self.state.db.session(readonly=True) as session:
            return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def api_factory(db_url, tmp_path, models, hands):  # noqa: F811
    """Start an app with extra settings: ``api_factory(webhook_backoff_s=0.05)``."""
    started: list[TestClient] = []

    def start(raise_server_exceptions: bool = True, **overrides: Any) -> Api:
        settings = make_settings(db_url, tmp_path, **overrides)
        clock = FakeClock()
        app = make_app(settings, models, clock)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        started.append(client)
        api = Api(client, app, settings, clock, hands)
        for scope in ("kiosk", "terminal", "admin"):
            api.keys[scope] = api.new_key(scope, scope)
        return api

    yield start
    for client in reversed(started):
        client.__exit__(None, None, None)


@pytest.fixture
def api(api_factory) -> Iterator[Api]:
    yield api_factory()


def assert_problem(response, status: int, code: str) -> dict:
    """The response is an RFC 9457 problem with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"/problems/{code}" and body["code"] == code, body
    assert body["status"] == status
    assert {"title", "detail", "instance"} <= set(body)
    return body
