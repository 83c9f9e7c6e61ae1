"""Fixtures for the kiosk browser tests: the real API server, synthetic camera videos, Chromium.

- ``kiosk_server``: ``palmpay.api.app.create_app`` (dev mode, SQLite in a temp folder) served by
  uvicorn in a thread on 127.0.0.1 with a random port, plus a kiosk and a terminal API key.
- ``narrow_server``: another such server (its own database) with ``n_safe=0``: the gallery is
  always past N_safe, so every payment needs the last 4 digits of the shopper's phone.
- ``videos``: Y4M clips rendered by :mod:`palmpay.synth` for Chromium's fake camera
  (``--use-file-for-fake-video-capture``). Chromium loops them, so the tests never assume which
  frame comes first: every clip holds the hand steadily in view for most of its frames.
- ``launch``: starts Debian's Chromium (``/usr/bin/chromium``, or ``PALMPAY_CHROMIUM``) through
  Playwright with a fake camera playing one clip. Playwright's own browser downloads are never
  used. Without Chromium or Playwright the tests skip with a message, except under ``CI=true``,
  where they fail: CI must run them.
- ``shots``: saves a PNG of a screen when ``PALMPAY_KIOSK_SCREENSHOTS`` names a folder
  (``scripts/kiosk_screenshots.py`` sets it to ``docs/kiosk``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from palmpay import synth

CHROMIUM = Path(os.environ.get("PALMPAY_CHROMIUM", "/usr/bin/chromium"))
#: Identity seeds of the synthetic shoppers: A enrolls and pays, B is never enrolled.
HAND_A = 11
HAND_B = 12
#: Enrolls both hands.
HAND_C = 13
#: Enrolled over the API, then unenrolled at the kiosk (its own shopper: no test depends on
#: another test's order).
HAND_D = 14
#: Enrolls at the narrowing server (``n_safe=0``) with the phone digits, then pays with them.
HAND_E = 15
#: The card the tests enroll (a Luhn-valid Visa test number) and the name on it.
CARD = "4242 4242 4242 4242"
CARD_DIGITS = CARD.replace(" ", "")
NAME = "Ada Palmer"
#: The last 4 digits of hand A's phone (given at enrollment, never needed at the default server).
PHONE_A = "6039"
#: Hand E's shopper at the narrowing server: card (a Luhn-valid Mastercard test number no other
#: test enrolls), name, the last 4 digits of the phone, and digits nobody enrolled with.
CARD_E = "5105 1051 0510 5100"
CARD_E_DIGITS = CARD_E.replace(" ", "")
NAME_E = "Noor Digits"
PHONE_E = "2718"
PHONE_WRONG = "3141"

_BASE_ARGS = [
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def unavailable(message: str) -> None:
    """Skip with ``message``, or fail when ``CI=true`` (the kiosk suite must run in CI)."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message} (CI=true: the kiosk browser tests must run in CI)", pytrace=False)
    pytest.skip(message)


@dataclass
class KioskServer:
    """The running API: base URL, keys, and the app state (database, payment service)."""

    base_url: str
    kiosk_key: str
    terminal_key: str
    app: Any
    settings: Any

    @property
    def state(self) -> Any:
        return self.app.state.palmpay

    def url(self, page: str, key: str | None = None, query: str = "") -> str:
        """URL of a kiosk page; the key goes in the fragment, never in the path or query."""
        return f"{self.base_url}/kiosk/{page}{query}" + (f"#key={key}" if key else "")


def new_terminal_key(server: KioskServer, name: str) -> str:
    """A fresh terminal key on ``server``: a terminal of its own (its own attempt counter)."""
    from palmpay.api.keys import create_api_key

    _, secret = create_api_key(server.state.db, name, "terminal")
    return secret


def _serve(tmp_path_factory: pytest.TempPathFactory, folder: str,
           **overrides: Any) -> Iterator[KioskServer]:
    """A kiosk server on its own SQLite database, with ``Settings(**overrides)``."""
    from palmpay.api.app import create_app
    from palmpay.api.keys import create_api_key
    from palmpay.api.routes import kiosk
    from palmpay.api.threaded import serve_in_thread
    from palmpay.config import Settings

    data_dir = tmp_path_factory.mktemp(folder)
    settings = Settings(data_dir=data_dir, dev_mode=True, database_url=None, **overrides)
    app = create_app(settings)
    if not any(getattr(r, "path", "") == "/kiosk/enroll" for r in app.routes):
        kiosk.mount_kiosk(app)  # until create_app includes the kiosk router itself
    with serve_in_thread(app, timeout_graceful_shutdown=2, stop_timeout_s=15) as base_url:
        db = app.state.palmpay.db
        _, kiosk_key = create_api_key(db, "kiosk browser test", "kiosk")
        _, terminal_key = create_api_key(db, "checkout browser test", "terminal")
        yield KioskServer(base_url, kiosk_key, terminal_key, app, settings)


@pytest.fixture(scope="session")
def kiosk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KioskServer]:
    yield from _serve(tmp_path_factory, "kiosk-data")


@pytest.fixture(scope="session")
def narrow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KioskServer]:
    """A server whose gallery is always past N_safe (``n_safe=0``): payments need the digits."""
    yield from _serve(tmp_path_factory, "kiosk-narrow-data", n_safe=0)


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fake-camera clips at 15 fps, the hand in view in most frames: hand A to enroll (640x480),
    hand A to pay (another pose, 1280x720), hand B (never enrolled), person C's right then left
    hand, hand D to pay after it was unenrolled, hand E to enroll and to pay at the narrowing
    server."""
    folder = tmp_path_factory.mktemp("kiosk-videos")
    a = synth.HandIdentity.from_seed(HAND_A)
    b = synth.HandIdentity.from_seed(HAND_B)
    c = synth.HandIdentity.from_seed(HAND_C)
    d = synth.HandIdentity.from_seed(HAND_D)
    e = synth.HandIdentity.from_seed(HAND_E)
    clips = {
        "enroll_a": synth.presentation_frames(a, 30, seed=1, enter_fraction=0.1,
                                              leave_fraction=0.1),
        "pay_a": synth.presentation_frames(a, 30, seed=2, size=(1280, 720),
                                           enter_fraction=0.1, leave_fraction=0.1),
        "pay_b": synth.presentation_frames(b, 30, seed=3, enter_fraction=0.1,
                                           leave_fraction=0.1),
        "pay_d": synth.presentation_frames(d, 30, seed=6, enter_fraction=0.1,
                                           leave_fraction=0.1),
        "enroll_e": synth.presentation_frames(e, 30, seed=7, enter_fraction=0.1,
                                              leave_fraction=0.1),
        "pay_e": synth.presentation_frames(e, 30, seed=8, enter_fraction=0.1,
                                           leave_fraction=0.1),
        # Right hand, then left hand: the "add my other hand" path.
        "both_c": synth.presentation_frames(c, 24, seed=4, hand="right", enter_fraction=0.1,
                                            leave_fraction=0.1)
        + synth.presentation_frames(c, 24, seed=5, hand="left", enter_fraction=0.1,
                                    leave_fraction=0.1),
    }
    return {name: synth.write_y4m(folder / f"{name}.y4m", frames)
            for name, frames in clips.items()}


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        unavailable(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, "
                    "or set PALMPAY_CHROMIUM)")
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture(scope="session")
def launch(playwright_driver: Any) -> Iterator[Callable[..., Any]]:
    """``launch(video, fake_ui=True)`` → a Chromium Browser whose camera plays ``video``.

    ``fake_ui=False`` leaves out ``--use-fake-ui-for-media-stream``, so camera permission is
    not granted automatically (headless Chromium then denies it). Browsers still open at the
    end of the session are closed then; tests close theirs when done to keep memory low."""
    browsers: list[Any] = []

    def start(video: Path | None, fake_ui: bool = True) -> Any:
        args = list(_BASE_ARGS)
        if fake_ui:
            args.append("--use-fake-ui-for-media-stream")
        if video is not None:
            args.append(f"--use-file-for-fake-video-capture={video}")
        browser = playwright_driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args)
        browsers.append(browser)
        return browser

    yield start
    for browser in browsers:
        if browser.is_connected():
            browser.close()


@dataclass
class PageWatch:
    """What a page did: console lines, uncaught errors, requests (URL, method, headers)."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


def watch(page: Any) -> PageWatch:
    """Record a page's console output, JavaScript errors and requests."""
    seen = PageWatch()
    page.on("console", lambda msg: seen.console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: seen.errors.append(str(err)))
    page.on("request", lambda req: seen.requests.append((req.method, req.url, req.headers)))
    return seen


@pytest.fixture(scope="session")
def shots() -> Callable[[Any, str], None]:
    """``shots(page, name)``: a screenshot to ``$PALMPAY_KIOSK_SCREENSHOTS/<name>.png`` if set."""
    folder = os.environ.get("PALMPAY_KIOSK_SCREENSHOTS")
    out = Path(folder) if folder else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> None:
        if out is not None:
            page.screenshot(path=str(out / f"{name}.png"), animations="disabled",
                            caret="initial")

    return take
