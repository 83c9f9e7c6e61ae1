"""The kiosk web app end to end in real headless Chromium against the real API server.

A synthetic shopper (hand A) enrolls through /kiosk/enroll with Chromium's fake camera playing
a video of their hand, pays at /kiosk/checkout with another video of the same hand (another
pose, 1280x720) and is declined above the simulated card limit. Another shopper (hand D,
enrolled over the API) unenrolls at /kiosk/unenroll with their palm and card digits and can no
longer pay. No test depends on
another's order (``make test-shuffled``).
A never-enrolled hand is "Not recognised"; a denied or missing camera, a missing or refused key,
a card number failing the Luhn check and phone digits that are not exactly four each show their
message. At a second server whose gallery is past N_safe (``n_safe=0``) the checkout asks for
the last 4 digits of the shopper's phone (hand E enrolled with them): the right digits pay, wrong
ones are "Not recognised", and a terminal locked out after repeated wrong digits says to pay
another way. Every screen is checked for
touch-target size and sideways overflow at 640x480 or 1280x720, and screenshots of each screen
go to ``$PALMPAY_KIOSK_SCREENSHOTS`` when set (``scripts/kiosk_screenshots.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import select

from palmpay import synth
from palmpay.payments.models import Card, Customer, PalmTemplate, Payment
from tests.kiosk.conftest import (
    CARD,
    CARD_DIGITS,
    CARD_E,
    CARD_E_DIGITS,
    HAND_D,
    HAND_E,
    NAME,
    NAME_E,
    PHONE_A,
    PHONE_E,
    PHONE_WRONG,
    PageWatch,
    new_terminal_key,
    watch,
)
from tests.pan_scan import find_pans

# The browser first: without Chromium the tests skip (or fail under CI=true) before the server
# starts and the videos are rendered.
pytestmark = pytest.mark.usefixtures("playwright_driver")

SMALL = {"width": 640, "height": 480}
LARGE = {"width": 1280, "height": 720}
CAPTURE_TIMEOUT_MS = 60_000
EXPIRY = "12/34"

_LAYOUT_JS = """
() => {
  const out = [];
  const vw = document.documentElement.clientWidth;
  const vh = window.innerHeight;
  if (document.documentElement.scrollWidth > vw + 1) {
    out.push(`page scrolls sideways: ${document.documentElement.scrollWidth} > ${vw}`);
  }
  const targets = document.querySelectorAll(
    "button, a.button, input:not([type=checkbox]), select, label.check, .topbar a");
  for (const el of targets) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // on a hidden screen
    const name = el.id || el.textContent.trim().slice(0, 30) || el.tagName;
    if (r.height < 48 || r.width < 48) {
      out.push(`${name}: ${Math.round(r.width)}x${Math.round(r.height)} px, under 48 px`);
    }
    if (r.right > vw + 1 || r.left < -1) out.push(`${name} sticks out sideways`);
  }
  if (document.body.dataset.current === "camera") {
    for (const id of ["stage", "prompt", "camera-cancel"]) {
      const r = document.getElementById(id).getBoundingClientRect();
      if (r.top < 0 || r.bottom > vh + 1) out.push(`${id} is not fully on screen`);
    }
    if (document.getElementById("stage").getBoundingClientRect().height < 150) {
      out.push("camera preview is under 150 px tall");
    }
  }
  return out;
}
"""

_STORAGE_JS = """
async () => {
  const dump = (s) => Object.fromEntries(Object.keys(s).map((k) => [k, s.getItem(k)]));
  const dbs = indexedDB.databases ? await indexedDB.databases() : [];
  return {
    local: dump(localStorage),
    session: dump(sessionStorage),
    cookie: document.cookie,
    indexeddb: dbs.map((d) => d.name),
    caches: "caches" in window ? await caches.keys() : [],
    fields: Array.from(document.querySelectorAll("input:not([type=checkbox])"))
      .map((i) => i.value),
  };
}
"""


# Test instrumentation (an init script, so the page's CSP does not apply): every POST of a
# FormData records its path, Idempotency-Key, a SHA-256 of each file part and the phone_last4
# field, in window.__posts. No other field (the card number) is read.
_POST_SPY_JS = """
(() => {
  const realFetch = window.fetch;
  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  window.__posts = [];
  window.fetch = async (url, init = {}) => {
    if (init.body instanceof FormData) {
      const files = [];
      for (const [, value] of init.body.entries()) {
        if (value instanceof Blob) {
          files.push(hex(await crypto.subtle.digest("SHA-256", await value.arrayBuffer())));
        }
      }
      const headers = new Headers(init.headers || {});
      window.__posts.push({path: new URL(url, location.href).pathname,
                           key: headers.get("Idempotency-Key"), files,
                           phone: init.body.get("phone_last4")});
    }
    return realFetch(url, init);
  };
})();
"""


def current(page: Any) -> str:
    return page.evaluate("document.body.dataset.current || ''")


def wait_screen(page: Any, name: str, timeout: float = 15_000) -> None:
    """Wait until the page shows screen ``name``; fail with what it shows instead."""
    try:
        page.wait_for_function("n => document.body.dataset.current === n", arg=name,
                               timeout=timeout)
    except Exception as err:  # playwright TimeoutError
        prompt = page.evaluate("(document.getElementById('prompt') || {}).textContent || ''")
        raise AssertionError(f"screen {name!r} not shown after {timeout / 1000:.0f} s: "
                             f"showing {current(page)!r}, prompt {prompt!r}") from err


def check_layout(page: Any) -> None:
    problems = page.evaluate(_LAYOUT_JS)
    assert not problems, f"layout of screen {current(page)!r}: {problems}"


def text(page: Any, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def wait_progress(page: Any, at_least: int) -> None:
    page.wait_for_function(
        "n => Number(document.getElementById('progress').getAttribute('aria-valuenow')) >= n"
        " || document.body.dataset.current !== 'camera'", arg=at_least, timeout=CAPTURE_TIMEOUT_MS)


def assert_clean(seen: PageWatch, *secrets: str) -> None:
    """No JavaScript error; no secret or card number in the console or in any request URL."""
    assert not seen.errors, f"JavaScript errors: {seen.errors}"
    # HTTP errors the test provokes (401, 404) are logged by Chromium itself; nothing else.
    errors = [line for line in seen.console
              if line.startswith("error:") and "Failed to load resource" not in line]
    assert not errors, f"console errors (CSP violations?): {errors}"
    console = "\n".join(seen.console)
    assert not find_pans(console.encode()), f"card number in the console: {console}"
    for secret in secrets:
        assert secret not in console, "a secret was written to the console"
        for method, url, _headers in seen.requests:
            assert secret not in url, f"a secret is in the URL of {method} {url}"


def assert_digits_not_leaked(seen: PageWatch, storage: dict[str, Any], digits: str) -> None:
    """The phone digits are in no console line, no request path or query, no storage."""
    for line in seen.console:
        assert digits not in line, f"the phone digits are in the console: {line}"
    for method, url, _headers in seen.requests:
        parts = urlsplit(url)  # not the host: the random port could hold the digits by chance
        assert digits not in parts.path + parts.query + parts.fragment, f"{method} {url}"
    assert storage["local"] == {} and storage["cookie"] == ""
    assert storage["indexeddb"] == [] and storage["caches"] == []
    assert list(storage["session"]) == ["palmpay.kiosk.key"], storage["session"]
    assert not any(digits in value for value in storage["fields"]), "digits left in a field"


def api_calls(seen: PageWatch, path: str, method: str = "POST") -> list[dict[str, str]]:
    return [h for m, url, h in seen.requests if m == method and url.split("?")[0].endswith(path)]


def give_consent(page: Any) -> None:
    """From the enroll start screen: Start → consent ticked and accepted (the camera starts)."""
    page.click("#start")
    wait_screen(page, "consent")
    page.check("#consent-box")
    page.click("#consent-form button[type=submit]")


def capture_palm_and_reach_card_form(page: Any, shots: Any = None) -> None:
    """From the enroll start screen: consent → palm frames → Continue (one hand) → card form."""
    give_consent(page)
    wait_screen(page, "camera")
    if shots is not None:
        wait_progress(page, 2)
        if current(page) == "camera":
            check_layout(page)
            shots(page, "enroll-2-camera")
    wait_screen(page, "other-hand", CAPTURE_TIMEOUT_MS)
    if shots is not None:
        check_layout(page)
        shots(page, "enroll-3-other-hand")
    page.click("#other-hand-skip")
    wait_screen(page, "card")


# -------------------------------------------------------------------------------------------
# Enrollment (session-scoped: the checkout below uses this customer, whatever the test order)
# -------------------------------------------------------------------------------------------


@dataclass
class Enrolled:
    customer_id: str
    card_text: str
    storage: dict[str, Any]
    cookies: list[dict[str, Any]]
    seen: PageWatch
    url_after_load: str


@pytest.fixture(scope="session")
def enrolled(kiosk_server: Any, videos: dict, launch: Any, shots: Any) -> Enrolled:
    """Hand A enrolls through the enroll page at 640x480, keyboard where it matters."""
    browser = launch(videos["enroll_a"])
    context = browser.new_context(viewport=SMALL)
    page = context.new_page()
    seen = watch(page)
    page.goto(kiosk_server.url("enroll", kiosk_server.kiosk_key))
    wait_screen(page, "start")
    url_after_load = page.url
    check_layout(page)
    shots(page, "enroll-1-start")

    # Keyboard: focus starts on the heading; Tab reaches Start with a visible focus ring.
    page.keyboard.press("Tab")
    focus = page.evaluate("""() => {
        const el = document.activeElement, cs = getComputedStyle(el);
        return {id: el.id, style: cs.outlineStyle, width: parseFloat(cs.outlineWidth)};
    }""")
    assert focus["id"] == "start", focus
    assert focus["style"] != "none" and focus["width"] >= 3, f"focus not visible: {focus}"
    page.keyboard.press("Enter")

    wait_screen(page, "consent")
    check_layout(page)
    page.click("#consent-form button[type=submit]")  # not ticked yet
    assert "tick the box" in text(page, "#consent-error")
    shots(page, "enroll-4-consent")
    page.check("#consent-box")
    page.click("#consent-form button[type=submit]")

    wait_screen(page, "camera")
    assert page.get_attribute("#prompt", "aria-live") == "polite"
    wait_progress(page, 2)
    if current(page) == "camera":
        check_layout(page)
        shots(page, "enroll-2-camera")
    wait_screen(page, "other-hand", CAPTURE_TIMEOUT_MS)
    check_layout(page)
    shots(page, "enroll-3-other-hand")
    page.click("#other-hand-skip")

    wait_screen(page, "card")
    check_layout(page)
    page.fill("#customer-name", NAME)
    page.fill("#card-number", CARD)
    page.fill("#card-expiry", EXPIRY)
    page.fill("#card-holder", NAME)
    page.fill("#phone-last4", PHONE_A)
    assert page.get_attribute("#phone-last4", "inputmode") == "numeric"
    assert page.get_attribute("#phone-last4", "autocomplete") == "off"
    assert page.get_attribute("#phone-last4", "maxlength") == "4"
    assert page.get_attribute("#phone-last4", "name") is None
    assert "only compared with a few customers" in text(page, "#phone-last4-hint")
    shots(page, "enroll-5-card")
    with page.expect_response(lambda r: r.url.endswith("/v1/customers"),
                              timeout=CAPTURE_TIMEOUT_MS) as created:
        page.press("#card-expiry", "Enter")  # Enter submits the form
    assert created.value.status == 201, created.value.text()
    wait_screen(page, "done")
    check_layout(page)
    shots(page, "enroll-7-done")
    result = Enrolled(
        customer_id=text(page, "#done-id"),
        card_text=text(page, "#done-card"),
        storage=page.evaluate(_STORAGE_JS),
        cookies=context.cookies(),
        seen=seen,
        url_after_load=url_after_load,
    )
    context.close()
    browser.close()
    return result


def test_enrollment_creates_customer_and_keeps_no_card_data(
    enrolled: Enrolled, kiosk_server: Any
) -> None:
    assert enrolled.customer_id.startswith("cus_"), enrolled.customer_id
    assert enrolled.card_text == "Visa ••••4242"
    with kiosk_server.state.db.session(readonly=True) as session:
        customer = session.get(Customer, enrolled.customer_id)
        assert customer is not None and customer.status == "active"
        assert customer.name == NAME and customer.consent_at is not None
        card = session.scalars(select(Card).where(Card.customer_id == customer.id)).one()
        assert (card.brand.lower(), card.last4, card.exp_month, card.exp_year) == (
            "visa", "4242", 12, 2034)
        templates = session.scalars(
            select(PalmTemplate).where(PalmTemplate.customer_id == customer.id)).all()
        assert len(templates) >= kiosk_server.settings.enroll_min_samples

    # The key left the address bar at once; only it is in sessionStorage; no card data anywhere.
    assert "key=" not in enrolled.url_after_load and "#" not in enrolled.url_after_load
    storage = enrolled.storage
    assert storage["local"] == {}
    assert storage["session"] == {"palmpay.kiosk.key": kiosk_server.kiosk_key}
    assert storage["cookie"] == "" and enrolled.cookies == []
    assert storage["indexeddb"] == [] and storage["caches"] == []
    assert not any(storage["fields"]), f"form fields not cleared: {storage['fields']}"
    dumped = json.dumps(storage)
    assert CARD_DIGITS not in dumped and "4242 4242" not in dumped
    assert_clean(enrolled.seen, kiosk_server.kiosk_key, CARD_DIGITS)
    assert_digits_not_leaked(enrolled.seen, storage, PHONE_A)

    # Every API call carried the key in the Authorization header, never in the URL.
    analyze = api_calls(enrolled.seen, "/v1/capture/analyze")
    assert len(analyze) >= 5
    for headers in analyze + api_calls(enrolled.seen, "/v1/customers"):
        assert headers.get("authorization") == f"Bearer {kiosk_server.kiosk_key}"


def test_checkout_approved_then_declined(
    enrolled: Enrolled, kiosk_server: Any, videos: dict, launch: Any, shots: Any
) -> None:
    """Hand A pays 12.34 EUR pushed by a terminal in the URL (1280x720 camera and viewport);
    then the cashier types 1500.00 EUR, over the simulated card limit: declined."""
    browser = launch(videos["pay_a"])
    page = browser.new_page(viewport=LARGE)
    seen = watch(page)
    key = kiosk_server.terminal_key
    with page.expect_response(
        lambda r: r.url.endswith("/v1/payments") and r.request.method == "POST",
        timeout=CAPTURE_TIMEOUT_MS,
    ) as paid:
        page.goto(kiosk_server.url("checkout", key, "?amount=1234&currency=eur"))
        wait_screen(page, "camera")
        assert "12.34" in text(page, "#camera-title")
        wait_progress(page, 1)
        if current(page) == "camera":
            check_layout(page)
            shots(page, "checkout-2-camera")
    assert paid.value.status == 201, paid.value.text()
    payment = paid.value.json()
    wait_screen(page, "approved")
    check_layout(page)
    title = text(page, "#approved-title")
    assert title.startswith("Approved — ") and title.endswith("••••4242"), title
    assert payment["customer_name"] == NAME
    assert title == f"Approved — {NAME} ••••4242", title
    shots(page, "checkout-3-approved")

    with kiosk_server.state.db.session(readonly=True) as session:
        row = session.get(Payment, payment["id"])
        assert row is not None
        assert (row.customer_id, row.amount, row.currency, row.status) == (
            enrolled.customer_id, 1234, "eur", "succeeded")
        assert session.get(Card, row.card_id).last4 == "4242"

    # A cashier's sale, by keyboard: amount, Enter.
    page.click("#approved-new")
    wait_screen(page, "amount")
    assert "amount=" not in page.url
    assert page.evaluate("document.activeElement.id") == "amount"
    page.keyboard.type("1500,00")
    check_layout(page)
    shots(page, "checkout-1-amount")
    page.keyboard.press("Enter")
    wait_screen(page, "camera")
    wait_screen(page, "declined", CAPTURE_TIMEOUT_MS)
    check_layout(page)
    assert text(page, "#declined-title") == "Declined — Insufficient funds"
    shots(page, "checkout-4-declined")
    with kiosk_server.state.db.session(readonly=True) as session:
        declined = session.scalars(select(Payment).where(
            Payment.customer_id == enrolled.customer_id, Payment.amount == 150_000)).one()
        assert declined.decline_code == "insufficient_funds"
        assert declined.amount_received == 0 and declined.status != "succeeded"

    page.click("#declined-other")
    wait_screen(page, "pay-other-way")
    check_layout(page)
    shots(page, "checkout-6-pay-other-way")
    assert_clean(seen, key)
    for headers in api_calls(seen, "/v1/payments"):
        assert headers.get("authorization") == f"Bearer {key}"
        assert headers.get("idempotency-key")
    browser.close()


def test_unknown_hand_is_not_recognised(
    kiosk_server: Any, videos: dict, launch: Any, shots: Any
) -> None:
    browser = launch(videos["pay_b"])
    page = browser.new_page(viewport=SMALL)
    seen = watch(page)
    page.goto(kiosk_server.url("checkout", kiosk_server.terminal_key,
                               "?amount=500&currency=eur"))
    wait_screen(page, "not-recognised", CAPTURE_TIMEOUT_MS)
    check_layout(page)
    assert text(page, "h1:visible") == "Not recognised"
    assert page.locator("#retry").is_visible() and page.locator("#other-way").is_visible()
    shots(page, "checkout-5-not-recognised")
    with kiosk_server.state.db.session(readonly=True) as session:
        assert session.scalars(select(Payment).where(Payment.amount == 500)).all() == []
    page.click("#retry")  # Try again: the camera comes back for the same sale
    wait_screen(page, "camera")
    assert "5.00" in text(page, "#camera-title")
    page.click("#camera-cancel")
    wait_screen(page, "amount")
    assert_clean(seen, kiosk_server.terminal_key)
    browser.close()


def test_luhn_error_is_shown_before_anything_is_sent(
    kiosk_server: Any, videos: dict, launch: Any, shots: Any
) -> None:
    browser = launch(videos["enroll_a"])
    page = browser.new_page(viewport=SMALL)
    seen = watch(page)
    page.goto(kiosk_server.url("enroll", kiosk_server.kiosk_key))
    wait_screen(page, "start")
    capture_palm_and_reach_card_form(page)
    page.fill("#customer-name", NAME)
    page.fill("#card-number", "4242 4242 4242 4241")
    page.fill("#card-expiry", EXPIRY)
    page.fill("#phone-last4", PHONE_A)
    page.press("#card-expiry", "Enter")
    assert text(page, "#card-number-error") == "That card number isn't valid — please check it."
    assert page.get_attribute("#card-number", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "card-number"
    check_layout(page)
    shots(page, "enroll-6-luhn-error")
    page.fill("#card-number", "4242 4242")
    page.click("#card-submit")
    assert "wrong number of digits" in text(page, "#card-number-error")
    page.fill("#card-number", CARD)
    page.fill("#card-expiry", "01/20")
    page.click("#card-submit")
    assert text(page, "#card-expiry-error") == "This card has expired."
    assert text(page, "#card-number-error") == ""
    assert current(page) == "card"
    assert api_calls(seen, "/v1/customers") == [], "the form was sent despite the errors"
    page.click("#card-cancel")
    wait_screen(page, "start")
    assert page.input_value("#card-number") == ""
    assert_clean(seen, kiosk_server.kiosk_key, CARD_DIGITS)
    browser.close()


def test_enroll_both_hands(kiosk_server: Any, videos: dict, launch: Any) -> None:
    """The optional second hand: frames of the first hand no longer count, the other's do."""
    browser = launch(videos["both_c"])
    page = browser.new_page(viewport=SMALL)
    seen = watch(page)
    page.goto(kiosk_server.url("enroll", kiosk_server.kiosk_key))
    give_consent(page)
    wait_screen(page, "other-hand", CAPTURE_TIMEOUT_MS)
    first = text(page, "#other-hand-title")
    assert first in ("Your right palm is captured", "Your left palm is captured"), first
    page.click("#other-hand-add")
    wait_screen(page, "card", CAPTURE_TIMEOUT_MS)
    page.fill("#customer-name", "Cy Both")
    page.fill("#card-number", "5555 5555 5555 4444")
    page.fill("#card-expiry", "0731")
    page.fill("#phone-last4", "1984")
    page.press("#card-number", "Enter")
    wait_screen(page, "done", CAPTURE_TIMEOUT_MS)
    assert text(page, "#done-card") == "Mastercard ••••4444"
    customer_id = text(page, "#done-id")
    with kiosk_server.state.db.session(readonly=True) as session:
        templates = session.scalars(
            select(PalmTemplate).where(PalmTemplate.customer_id == customer_id)).all()
    # Five per hand; the second capture only counted frames of the other hand.
    assert len(templates) == 10
    page.click("#done-finish")
    wait_screen(page, "start")
    assert_clean(seen, kiosk_server.kiosk_key, "5555555555554444")
    browser.close()


# Test instrumentation (an init script): counts calls of getUserMedia in window.__camera.
_CAMERA_SPY_JS = """
(() => {
  window.__camera = 0;
  const media = navigator.mediaDevices;
  if (!media) return;
  const real = media.getUserMedia.bind(media);
  media.getUserMedia = (constraints) => { window.__camera += 1; return real(constraints); };
})();
"""


def test_no_camera_and_no_analysis_before_consent(
    kiosk_server: Any, videos: dict, launch: Any
) -> None:
    """GDPR Art. 9 / BIPA: the camera is not requested and no frame is analysed until the
    shopper has given consent; cancelling at the consent screen starts nothing either."""
    browser = launch(videos["enroll_a"])
    context = browser.new_context(viewport=SMALL)
    context.add_init_script(_CAMERA_SPY_JS)
    page = context.new_page()
    seen = watch(page)
    page.goto(kiosk_server.url("enroll", kiosk_server.kiosk_key))
    wait_screen(page, "start")
    page.click("#start")
    wait_screen(page, "consent")
    page.click("#consent-form button[type=submit]")  # not ticked: refused, still no camera
    assert "tick the box" in text(page, "#consent-error")
    page.click("#consent-cancel")
    wait_screen(page, "start")
    page.click("#start")
    wait_screen(page, "consent")
    assert not page.is_checked("#consent-box"), "consent must be given again after Cancel"
    # Everything the page could have done on its own has had its chance: the consent screen is
    # a second time up, after a refused submit and a cancel.
    assert page.evaluate("window.__camera") == 0
    assert page.evaluate("document.getElementById('video').srcObject") is None
    assert api_calls(seen, "/v1/capture/analyze") == []

    page.check("#consent-box")
    page.click("#consent-form button[type=submit]")
    wait_screen(page, "camera")
    wait_progress(page, 1)  # frames are analysed only now
    assert page.evaluate("window.__camera") == 1
    assert api_calls(seen, "/v1/capture/analyze")
    context.close()
    browser.close()


def test_camera_denied_or_missing_shows_a_clear_message(
    kiosk_server: Any, videos: dict, launch: Any, shots: Any
) -> None:
    # No --use-fake-ui-for-media-stream and no permission granted: Chromium denies the camera.
    browser = launch(videos["enroll_a"], fake_ui=False)
    context = browser.new_context(viewport=SMALL, permissions=[])
    page = context.new_page()
    seen = watch(page)
    page.goto(kiosk_server.url("enroll", kiosk_server.kiosk_key))
    give_consent(page)
    wait_screen(page, "camera-error")
    assert text(page, "#camera-error-title") == "Camera access is blocked"
    assert "allow camera access" in text(page, "#camera-error-text")
    check_layout(page)
    shots(page, "camera-denied")
    assert api_calls(seen, "/v1/capture/analyze") == []
    context.close()
    browser.close()

    browser = launch(None)
    for name, script in {
        "no-mediadevices": "Object.defineProperty(Navigator.prototype, 'mediaDevices', "
                           "{get: () => undefined, configurable: true});",
        "not-found": "navigator.mediaDevices.getUserMedia = () => Promise.reject("
                     "new DOMException('Requested device not found', 'NotFoundError'));",
    }.items():
        context = browser.new_context(viewport=LARGE)
        context.add_init_script(script)
        page = context.new_page()
        page.goto(kiosk_server.url("checkout", kiosk_server.terminal_key,
                                   "?amount=100&currency=eur"))
        wait_screen(page, "camera-error")
        assert text(page, "#camera-error-title") == "No camera found", name
        check_layout(page)
        if name == "not-found":
            shots(page, "camera-missing")
        context.close()
    browser.close()


def test_without_a_valid_key_the_kiosk_says_so(
    kiosk_server: Any, launch: Any, shots: Any
) -> None:
    browser = launch(None)
    page = browser.new_page(viewport=SMALL)
    seen = watch(page)
    for name in ("enroll", "checkout", "unenroll"):
        page.goto(kiosk_server.url(name))
        wait_screen(page, "unprovisioned")
        assert text(page, "h1:visible") == "This kiosk is not provisioned"
        check_layout(page)
        if name == "enroll":
            shots(page, "not-provisioned")
    assert seen.requests and not any("/v1/" in url for _m, url, _h in seen.requests)

    # A refused key: the first API call answers 401 and the page says the key was refused.
    page.goto(kiosk_server.url("unenroll", "pp_kiosk_not-a-real-key"))
    wait_screen(page, "form")
    page.fill("#customer-id", "cus_doesnotexist")
    page.fill("#card-last4", "1234")
    page.press("#card-last4", "Enter")
    wait_screen(page, "key-rejected", CAPTURE_TIMEOUT_MS)
    shots(page, "key-rejected")
    assert page.evaluate("sessionStorage.length") == 0
    assert_clean(seen, "pp_kiosk_not-a-real-key")
    browser.close()


def test_kiosk_helpers_in_the_browser(kiosk_server: Any, launch: Any) -> None:
    """The pure ES modules (prompts, Luhn, phone digits, amounts) in Chromium itself."""
    browser = launch(None)
    page = browser.new_page()
    page.goto(kiosk_server.url("unenroll"))
    got = page.evaluate("""async () => {
      const p = await import("./static/prompts.js");
      const m = await import("./static/money.js");
      const q = (problems) => ({roi_status: "ok", reason: "ok", handedness: "right",
        quality: {sharpness: 20, brightness: 120, palm_fraction: 0.3, problems}});
      const pose = (reason) => ({roi_status: "bad_pose", reason, quality: null});
      return {
        prompts: [
          p.promptFor({roi_status: "no_hand", reason: "no hand in frame", quality: null}),
          p.promptFor({roi_status: "multiple_hands", reason: "2 hands in frame", quality: null}),
          p.promptFor({roi_status: "palm_too_small", reason: "palm too small", quality: null}),
          p.promptFor(pose("back of the hand towards the camera; show the palm")),
          p.promptFor(pose("3 fingers curled over the palm; open the hand")),
          p.promptFor(pose("palm tilted 40 degrees away from the camera; hold it flat")),
          p.promptFor(q(["too_dark"])), p.promptFor(q(["too_bright"])),
          p.promptFor(q(["palm_too_small"])), p.promptFor(q(["blurred"])), p.promptFor(q([])),
        ],
        good: [p.isGood(q([])), p.isGood(q(["blurred"])), p.isGood(pose("x"))],
        luhn: ["4242424242424242", "4242424242424241", "5555555555554444", "378282246310005"]
          .map(m.luhnValid),
        minor: [["12.34", "eur"], ["12,5", "eur"], ["1 000", "eur"], ["1000", "jpy"],
                ["1.5", "jpy"], ["0", "eur"], ["abc", "eur"], ["1.234", "eur"],
                ["0.07", "usd"], ["1.234", "bhd"]]
          .map(([t, c]) => m.toMinorUnits(t, c).minor),
        phone: ["0123", " 9876 ", "123", "12345", "12a4", "", "١٢٣٤"].map(m.phoneLast4Problem),
        expiry: [m.parseExpiry("12/34").year, m.parseExpiry("1/2030").month,
                 m.parseExpiry("13/30").problem, m.parseExpiry("01/20").problem],
      };
    }""")
    assert got["prompts"] == [
        "Show your palm to the camera", "One hand at a time", "Move closer",
        "Show your palm, not the back of your hand", "Spread your fingers",
        "Hold your hand flat, facing the camera", "Too dark — find more light", "Too bright",
        "Move closer", "Hold still", "Hold still",
    ]
    assert got["good"] == [True, False, False]
    assert got["luhn"] == [True, False, True, True]
    assert got["minor"] == [1234, 1250, 100000, 1000, None, None, None, None, 7, 1234]
    four = "Enter exactly 4 digits: the last 4 of your phone number."
    assert got["phone"] == [None, None, four, four, four, four, four]  # ASCII digits only
    assert got["expiry"] == [
        2034, 1, "The expiry month must be 01 to 12.", "This card has expired."]
    browser.close()


def _enroll_over_api(kiosk_server: Any, seed: int) -> str:
    """Enroll the synthetic hand ``seed`` through POST /v1/customers; returns the customer id."""
    rng = np.random.default_rng(2000 + seed)
    identity = synth.HandIdentity.from_seed(seed)
    files = []
    for n in range(kiosk_server.settings.enroll_min_samples + 2):
        image = synth.render_hand(identity, synth.Variation.random(rng, synth.TEST_RANGES,
                                                                   size=(640, 480)))
        ok, png = cv2.imencode(".png", image)
        assert ok
        files.append(("images", (f"d{n}.png", png.tobytes(), "image/png")))
    data = {"name": "Dora Unenroll", "card_number": "2223003122003222", "exp_month": "12",
            "exp_year": "2034", "consent": "true"}
    r = httpx.post(f"{kiosk_server.base_url}/v1/customers", data=data, files=files,
                   headers={"Authorization": f"Bearer {kiosk_server.kiosk_key}"}, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_unenroll_then_the_palm_no_longer_pays(
    kiosk_server: Any, videos: dict, launch: Any, shots: Any
) -> None:
    """Hand D's customer is removed at the unenroll page on the proof of hand D's palm and the
    last 4 digits of its card (the id alone is not enough); then hand D is not recognised."""
    customer_id = _enroll_over_api(kiosk_server, HAND_D)
    browser = launch(videos["pay_d"])
    context = browser.new_context(viewport=SMALL)
    page = context.new_page()
    seen = watch(page)
    page.goto(kiosk_server.url("unenroll", kiosk_server.kiosk_key))
    wait_screen(page, "form")
    check_layout(page)
    assert page.get_attribute("#card-last4", "inputmode") == "numeric"
    assert page.get_attribute("#card-last4", "name") is None
    page.fill("#customer-id", customer_id)
    page.fill("#card-last4", "32")
    page.press("#card-last4", "Enter")
    assert "exactly 4 digits" in text(page, "#unenroll-error")  # checked on the page
    assert not api_calls(seen, "/unenroll")
    # Wrong card digits: the palm is captured and sent; the server refuses without saying why.
    page.fill("#card-last4", "0000")
    page.press("#card-last4", "Enter")
    wait_screen(page, "camera")
    check_layout(page)
    wait_screen(page, "form", CAPTURE_TIMEOUT_MS)
    assert "could not verify" in text(page, "#unenroll-error")
    assert len(api_calls(seen, f"/v1/customers/{customer_id}/unenroll")) == 1
    page.fill("#customer-id", customer_id)
    page.fill("#card-last4", "3222")  # the enrolled card 2223 0031 2200 3222
    shots(page, "unenroll-1-form")
    page.press("#card-last4", "Enter")
    wait_screen(page, "camera")
    shots(page, "unenroll-2-camera")
    wait_screen(page, "removed", CAPTURE_TIMEOUT_MS)
    check_layout(page)
    assert text(page, "#removed-id") == customer_id
    shots(page, "unenroll-3-removed")
    with kiosk_server.state.db.session(readonly=True) as session:
        customer = session.get(Customer, customer_id)
        assert customer.status == "deleted" and customer.deleted_at is not None
        assert session.scalars(select(PalmTemplate).where(
            PalmTemplate.customer_id == customer_id)).all() == []

    # Moving to another kiosk page in this tab keeps the key (sessionStorage) without a fragment.
    page.goto(kiosk_server.url("enroll"))
    wait_screen(page, "start")
    assert_clean(seen, kiosk_server.kiosk_key)
    context.close()

    page = browser.new_page(viewport=SMALL)
    page.goto(kiosk_server.url("checkout", kiosk_server.terminal_key,
                               "?amount=777&currency=eur"))
    wait_screen(page, "not-recognised", CAPTURE_TIMEOUT_MS)
    browser.close()


# -------------------------------------------------------------------------------------------
# Phone digits at enrollment; the narrowing factor at checkout (gallery past N_safe)
# -------------------------------------------------------------------------------------------


def test_phone_digits_are_checked_before_anything_is_sent(
    kiosk_server: Any, videos: dict, launch: Any, shots: Any
) -> None:
    """Three digits, or anything but digits, is refused on the page: nothing is sent."""
    browser = launch(videos["enroll_a"])
    page = browser.new_page(viewport=SMALL)
    seen = watch(page)
    page.goto(kiosk_server.url("enroll", kiosk_server.kiosk_key))
    wait_screen(page, "start")
    capture_palm_and_reach_card_form(page)
    page.fill("#customer-name", NAME)
    page.fill("#card-number", CARD)
    page.fill("#card-expiry", EXPIRY)
    page.fill("#phone-last4", "603")
    page.press("#card-expiry", "Enter")
    problem = "Enter exactly 4 digits: the last 4 of your phone number."
    assert text(page, "#phone-last4-error") == problem
    assert page.get_attribute("#phone-last4", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "phone-last4"
    assert text(page, "#card-number-error") == "" and text(page, "#card-expiry-error") == ""
    check_layout(page)
    shots(page, "enroll-8-phone-digits-error")
    page.type("#phone-last4", "9")  # typing clears the message; the next submit checks again
    assert text(page, "#phone-last4-error") == ""
    assert page.get_attribute("#phone-last4", "aria-invalid") is None
    page.fill("#phone-last4", "60a9")
    page.click("#card-submit")
    assert text(page, "#phone-last4-error") == problem
    page.fill("#phone-last4", "")
    page.click("#card-submit")
    assert text(page, "#phone-last4-error") == problem
    assert current(page) == "card"
    assert api_calls(seen, "/v1/customers") == [], "the form was sent despite the errors"
    page.click("#card-cancel")
    wait_screen(page, "start")
    assert page.input_value("#phone-last4") == ""
    assert_clean(seen, kiosk_server.kiosk_key, CARD_DIGITS)
    browser.close()


@dataclass
class NarrowEnrolled:
    customer_id: str
    posts: list[dict[str, Any]]


@pytest.fixture(scope="session")
def narrow_enrolled(narrow_server: Any, videos: dict, launch: Any) -> NarrowEnrolled:
    """Hand E enrolls through the enroll page of the narrowing server with the phone digits."""
    browser = launch(videos["enroll_e"])
    context = browser.new_context(viewport=SMALL)
    context.add_init_script(_POST_SPY_JS)
    page = context.new_page()
    seen = watch(page)
    page.goto(narrow_server.url("enroll", narrow_server.kiosk_key))
    wait_screen(page, "start")
    capture_palm_and_reach_card_form(page)
    page.fill("#customer-name", NAME_E)
    page.fill("#card-number", CARD_E)
    page.fill("#card-expiry", EXPIRY)
    page.fill("#phone-last4", PHONE_E)
    with page.expect_response(lambda r: r.url.endswith("/v1/customers"),
                              timeout=CAPTURE_TIMEOUT_MS) as created:
        page.press("#phone-last4", "Enter")
    assert created.value.status == 201, created.value.text()
    wait_screen(page, "done")
    assert text(page, "#done-card") == "Mastercard ••••5100"
    result = NarrowEnrolled(customer_id=text(page, "#done-id"),
                            posts=page.evaluate("window.__posts"))
    storage = page.evaluate(_STORAGE_JS)
    assert CARD_E_DIGITS not in json.dumps(storage)
    assert_clean(seen, narrow_server.kiosk_key, CARD_E_DIGITS)
    assert_digits_not_leaked(seen, storage, PHONE_E)
    context.close()
    browser.close()
    return result


def _checkout_until_digits(page: Any, server: Any, key: str, query: str) -> Any:
    """Open the checkout with a pushed sale; the palm is sent; the server asks for the digits
    (428 narrowing_required). Returns that response."""
    with page.expect_response(
        lambda r: r.url.endswith("/v1/payments") and r.request.method == "POST",
        timeout=CAPTURE_TIMEOUT_MS,
    ) as asked:
        page.goto(server.url("checkout", key, query))
        wait_screen(page, "camera")
    assert asked.value.status == 428, asked.value.text()
    wait_screen(page, "digits")
    return asked.value


def test_narrowing_asks_for_the_phone_digits_then_approves(
    narrow_enrolled: NarrowEnrolled, narrow_server: Any, videos: dict, launch: Any, shots: Any
) -> None:
    """Past N_safe the palm alone is not searched: 428, the digits on the keypad, then the same
    frames again with the digits and a new Idempotency-Key: Approved."""
    assert narrow_enrolled.posts[-1]["path"].endswith("/v1/customers")
    assert narrow_enrolled.posts[-1]["phone"] == PHONE_E  # the enroll page sent the digits
    browser = launch(videos["pay_e"])
    context = browser.new_context(viewport=SMALL)
    context.add_init_script(_POST_SPY_JS)
    page = context.new_page()
    seen = watch(page)
    key = narrow_server.terminal_key
    asked = _checkout_until_digits(page, narrow_server, key, "?amount=2345&currency=eur")
    assert asked.headers["content-type"].startswith("application/problem+json")
    problem = asked.json()
    assert problem["code"] == "narrowing_required", problem
    assert problem["type"].endswith("/problems/narrowing_required"), problem
    assert problem["narrowing"] == "phone_last4", problem

    assert text(page, "#digits-title") == "Enter the last 4 digits of your phone"
    assert page.evaluate("document.activeElement.id") == "digits"
    assert page.get_attribute("#digits-status", "aria-live") == "polite"
    check_layout(page)
    # The on-screen keypad, then a physical key while a keypad button has the focus.
    for digit in "2719":
        page.click(f"#keypad button[data-key='{digit}']")
    assert page.input_value("#digits") == "2719"
    page.click("#keypad-back")
    assert page.input_value("#digits") == "271"
    assert text(page, "#digits-status") == "3 of 4 digits entered"
    page.keyboard.press("8")
    assert page.input_value("#digits") == PHONE_E
    shots(page, "checkout-7-phone-digits")
    with page.expect_response(
        lambda r: r.url.endswith("/v1/payments") and r.request.method == "POST",
        timeout=CAPTURE_TIMEOUT_MS,
    ) as paid:
        page.click("#digits-submit")
    assert paid.value.status == 201, paid.value.text()
    payment = paid.value.json()
    wait_screen(page, "approved")
    assert text(page, "#approved-title") == f"Approved — {NAME_E} ••••5100"
    with narrow_server.state.db.session(readonly=True) as session:
        row = session.get(Payment, payment["id"])
        assert row is not None
        assert (row.customer_id, row.amount, row.currency, row.status) == (
            narrow_enrolled.customer_id, 2345, "eur", "succeeded")

    # Two requests: the same four frames, a new Idempotency-Key, the digits only the second time.
    posts = [p for p in page.evaluate("window.__posts") if p["path"].endswith("/v1/payments")]
    assert len(posts) == 2, posts
    first, second = posts
    assert len(first["files"]) == 4 and first["files"] == second["files"]
    assert first["key"] and second["key"] and first["key"] != second["key"]
    assert (first["phone"], second["phone"]) == (None, PHONE_E)
    assert [h.get("idempotency-key") for h in api_calls(seen, "/v1/payments")] == [
        first["key"], second["key"]]
    assert page.input_value("#digits") == ""
    assert_clean(seen, key, CARD_E_DIGITS)
    assert_digits_not_leaked(seen, page.evaluate(_STORAGE_JS), PHONE_E)
    context.close()
    browser.close()


def test_narrowing_with_wrong_digits_is_not_recognised(
    narrow_enrolled: NarrowEnrolled, narrow_server: Any, videos: dict, launch: Any
) -> None:
    """The enrolled palm with digits nobody enrolled with: the answer of an unknown palm. Typed
    on the keyboard; too few digits are refused on the page; Cancel leaves the digits screen."""
    key = new_terminal_key(narrow_server, "wrong digits browser test")  # its own attempt count
    browser = launch(videos["pay_e"])
    page = browser.new_page(viewport=SMALL)
    seen = watch(page)
    _checkout_until_digits(page, narrow_server, key, "?amount=606&currency=eur")
    page.keyboard.type(PHONE_WRONG[:2])
    page.keyboard.press("Enter")
    assert text(page, "#digits-status") == "Please enter all 4 digits"
    assert page.get_attribute("#digits", "aria-invalid") == "true"
    assert len(api_calls(seen, "/v1/payments")) == 1, "too few digits were sent"
    page.keyboard.type(PHONE_WRONG[2:])
    assert page.input_value("#digits") == PHONE_WRONG
    with page.expect_response(
        lambda r: r.url.endswith("/v1/payments") and r.request.method == "POST",
        timeout=CAPTURE_TIMEOUT_MS,
    ) as refused:
        page.keyboard.press("Enter")
    assert refused.value.status == 422, refused.value.text()
    assert refused.value.json()["code"] == "palm_not_recognised"
    wait_screen(page, "not-recognised")
    assert text(page, "h1:visible") == "Not recognised"
    with narrow_server.state.db.session(readonly=True) as session:
        assert session.scalars(select(Payment).where(Payment.amount == 606)).all() == []

    # Try again: a new capture, asked for the digits again; Cancel goes back to a new sale.
    with page.expect_response(
        lambda r: r.url.endswith("/v1/payments") and r.request.method == "POST",
        timeout=CAPTURE_TIMEOUT_MS,
    ) as asked:
        page.click("#retry")
    assert asked.value.status == 428, asked.value.text()
    wait_screen(page, "digits")
    assert page.input_value("#digits") == ""
    page.click("#digits-cancel")
    wait_screen(page, "amount")
    assert len(api_calls(seen, "/v1/payments")) == 3
    assert_clean(seen, key, CARD_E_DIGITS)
    assert_digits_not_leaked(seen, page.evaluate(_STORAGE_JS), PHONE_WRONG)
    browser.close()


def _palm_frames(seed: int, count: int = 4) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``count`` checkout frames (PNG) of the synthetic hand ``seed``, as multipart files."""
    rng = np.random.default_rng(3000 + seed)
    identity = synth.HandIdentity.from_seed(seed)
    files = []
    for n in range(count):
        image = synth.render_hand(identity, synth.Variation.random(rng, synth.TEST_RANGES,
                                                                   size=(640, 480)))
        ok, png = cv2.imencode(".png", image)
        assert ok
        files.append(("frames", (f"f{n}.png", png.tobytes(), "image/png")))
    return files


def test_too_many_wrong_digits_asks_to_pay_another_way(
    narrow_enrolled: NarrowEnrolled, narrow_server: Any, videos: dict, launch: Any, shots: Any
) -> None:
    """A terminal that sent wrong digits again and again is locked out (429 too_many_attempts,
    Retry-After): the checkout says to pay another way and retries nothing."""
    key = new_terminal_key(narrow_server, "locked-out browser test")
    frames = _palm_frames(HAND_E)
    statuses = []
    for attempt in range(30):
        r = httpx.post(f"{narrow_server.base_url}/v1/payments",
                       data={"amount": "808", "currency": "eur", "phone_last4": PHONE_WRONG},
                       files=frames, timeout=120,
                       headers={"Authorization": f"Bearer {key}",
                                "Idempotency-Key": f"lockout-{attempt}"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
        assert r.status_code == 422 and r.json()["code"] == "palm_not_recognised", r.text
    assert statuses[-1] == 429, f"never locked out: {statuses}"
    assert r.json()["code"] == "too_many_attempts", r.text
    assert int(r.headers["retry-after"]) > 0

    browser = launch(videos["pay_e"])
    page = browser.new_page(viewport=SMALL)
    seen = watch(page)
    with page.expect_response(
        lambda r: r.url.endswith("/v1/payments") and r.request.method == "POST",
        timeout=CAPTURE_TIMEOUT_MS,
    ) as first:
        page.goto(narrow_server.url("checkout", key, "?amount=707&currency=eur"))
        wait_screen(page, "camera")
    if first.value.status == 428:  # asked for the digits first: even the right ones are refused
        wait_screen(page, "digits")
        page.keyboard.type(PHONE_E)
        with page.expect_response(
            lambda r: r.url.endswith("/v1/payments") and r.request.method == "POST",
            timeout=CAPTURE_TIMEOUT_MS,
        ) as locked:
            page.keyboard.press("Enter")
        assert locked.value.status == 429, locked.value.text()
    else:
        assert first.value.status == 429, first.value.text()
    wait_screen(page, "too-many")
    check_layout(page)
    assert text(page, "h1:visible") == "Too many tries at this terminal — please pay another way"
    assert page.locator("[data-screen=too-many] button").all_inner_texts() == ["New sale"]
    shots(page, "checkout-8-too-many-tries")
    sent = len(api_calls(seen, "/v1/payments"))
    assert sent <= 2
    page.click("#too-many-new")
    wait_screen(page, "amount")
    assert len(api_calls(seen, "/v1/payments")) == sent, "the checkout retried by itself"
    with narrow_server.state.db.session(readonly=True) as session:
        assert session.scalars(select(Payment).where(Payment.amount.in_([707, 808]))).all() == []
    assert_clean(seen, key, CARD_E_DIGITS)
    browser.close()
