"""Hostile uploads: decompression bombs, refused formats, lying headers, corrupt files and the
bounded decode slots (palmpay/api/decode.py, palmpay/api/images.py).

Each hostile upload gets its problem (413 / 415 / 422) with nothing stored, and without the
server allocating the image it describes: the Python-visible memory of the request (numpy
arrays included, via :mod:`tracemalloc`) stays far below what a decode would take (the smallest
bomb here decodes to 500 MB).
"""

from __future__ import annotations

import importlib.util
import io
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from palmpay.api.decode import SLOTS, decode_slot
from palmpay.payments.models import Customer, Payment
from tests.api.conftest import assert_problem

_spec = importlib.util.spec_from_file_location(
    "hostile_files", Path(__file__).resolve().parents[2] / "scripts/security/hostile_files.py")
assert _spec is not None and _spec.loader is not None
H = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(H)

#: Python-visible memory a refused hostile request may use (multipart parsing, problem JSON).
MAX_TRACED = 40 << 20


@pytest.fixture
def traced() -> Iterator[Callable[[], int]]:
    """Peak traced memory (bytes) since the last call."""
    tracemalloc.start()

    def peak() -> int:
        value = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        return value

    try:
        tracemalloc.reset_peak()
        yield peak
    finally:
        tracemalloc.stop()


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (64, 64)).save(out, "GIF")
    return out.getvalue()


def _progressive(width: int, height: int) -> bytes:
    image = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()


HOSTILE = {
    # name: (file, status, code)
    "rle_bmp_30000": (H.rle_bmp(30000, 30000), 415, "unsupported_media_type"),
    "deflate_tiff_30000": (H.deflate_tiff(30000, 30000, strip_mb=8), 415,
                           "unsupported_media_type"),
    "gif": (_gif(), 415, "unsupported_media_type"),
    "jpeg_stray_byte_16000": (H.jpeg_with_stray_byte((16000, 16000)), 413, "payload_too_large"),
    "jpeg_stray_byte_4096": (H.jpeg_with_stray_byte((4096, 4096)), 413, "payload_too_large"),
    "webp_bomb_16383": (H.WEBP_BOMB, 413, "payload_too_large"),
    "png_ihdr_30000": (H.lying_png((30000, 30000), (64, 64)), 413, "payload_too_large"),
    "png_second_ihdr_huge": (H.lying_png((64, 64), (64, 64), (30000, 30000)), 413,
                             "payload_too_large"),
    # Pillow keeps the last IHDR (64²), libpng refuses the second one: never decoded.
    "png_second_ihdr_small": (H.lying_png((30000, 30000), (64, 64), (64, 64)), 422,
                              "invalid_image"),
    "png_4096_zero": (H.zero_png(4096, 4096), 413, "payload_too_large"),
    "empty": (b"", 422, "invalid_image"),
    "jpeg_cut_in_header": (H.small_jpeg()[:100], 422, "invalid_image"),
    "jpeg_cut_in_scan": (H.small_jpeg(640, 480)[:-3000], 422, "invalid_image"),
    "jpeg_magic_then_garbage": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, 422,
                                "invalid_image"),
    "png_cut_in_idat": (H.zero_png(500, 500)[:200], 422, "invalid_image"),
    "webp_header_only": (H.WEBP_BOMB[:20], 422, "invalid_image"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_upload_is_refused_before_decoding(api, traced, name):
    blob, status, code = HOSTILE[name]
    valid = api.hands["ann"].enroll
    traced()
    r = api.enroll("ann", images=[*valid, blob])
    peak = traced()
    body = assert_problem(r, status, code)
    assert body["image"] == f"images[{len(valid)}]" and body["filename"] == f"ann{len(valid)}.png"
    assert peak < MAX_TRACED, f"{name}: {peak >> 20} MB traced"
    assert_problem(api.pay(frames=[blob]), status, code)
    assert api.count(Customer) == 0 and api.count(Payment) == 0
    assert api.state.palms.customers == 0 and SLOTS.active == 0


def test_png_whose_ihdr_is_smaller_than_its_data_decodes_at_the_ihdr_size(api, traced):
    traced()
    r = api.pay(frames=[H.lying_png((64, 64), (3000, 3000))])  # 27 MB of pixels behind 64²
    assert_problem(r, 422, "palm_not_found")  # decoded as the 64x64 black image it says
    assert traced() < MAX_TRACED
    assert api.count(Payment) == 0


def test_ten_images_at_the_per_image_limit(api, traced):
    """Ten 4096² images (today's old limit, within the body limit): each is over the new
    ``max_image_pixels``; ten 1280×720 frames are under it but over ``max_request_pixels``."""
    big = H.zero_png(4096, 4096)
    traced()
    body = assert_problem(api.pay(frames=[big] * 10), 413, "payload_too_large")
    assert body["image"] == "frames[0]"
    assert traced() < MAX_TRACED
    r = api.pay(frames=[H.zero_png(1280, 720)] * 10)
    body = assert_problem(r, 413, "payload_too_large")
    assert body["image"] == "frames" and body["limit"] == api.settings.max_request_pixels
    assert "10 images" in body["detail"]
    assert traced() < MAX_TRACED
    assert api.count(Payment) == 0


def test_progressive_jpeg_counts_twice(api_factory):
    api = api_factory(max_image_pixels=100_000, max_request_pixels=100_000)
    body = assert_problem(api.pay(frames=[_progressive(300, 250)]), 413, "payload_too_large")
    assert "multi-scan" in body["detail"]
    baseline = cv2.imencode(".jpg", np.zeros((250, 300, 3), np.uint8))[1].tobytes()
    assert_problem(api.pay(frames=[baseline]), 422, "palm_not_found")  # decoded, no hand
    assert api.count(Payment) == 0


def test_valid_uploads_in_every_allowed_format_still_work(api):
    """PNG enrollment, WebP enrollment, and JPEG checkout frames with a stray byte after APP0
    (libjpeg skips it; the header check must not give up on it either)."""
    def webp(png: bytes) -> bytes:
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        return cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()

    assert api.enroll("ann").status_code == 201
    r = api.enroll("bob", "mastercard", images=[webp(b) for b in api.hands["bob"].enroll])
    assert r.status_code == 201, r.text
    stray = [H.jpeg_with_stray_byte(base=b) for b in api.hands["bob"].probe]
    r = api.pay(frames=stray)
    assert r.status_code == 201, r.text
    assert r.json()["customer"] == api.client.get(
        "/v1/customers/" + r.json()["customer"], headers=api.auth("kiosk")).json()["id"]
    assert api.count(Customer) == 2 and api.count(Payment) == 1


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_requests_wait_for_a_decode_slot(api_factory):
    api = api_factory(decode_workers=1, decode_wait_s=60)
    frame = api.hands["ann"].probe[0]
    with ThreadPoolExecutor(1) as pool:
        with decode_slot(api.settings):  # the one slot: the request must queue behind it
            pending = pool.submit(api.client.post, "/v1/capture/analyze",
                                  files={"image": ("f.jpg", frame, "image/jpeg")},
                                  headers=api.auth("kiosk"))
            _wait_for(lambda: SLOTS.waiting == 1)
            assert not pending.done()
        r = pending.result(timeout=60)
    assert r.status_code == 200, r.text
    assert SLOTS.active == 0 and SLOTS.waiting == 0


def test_no_slot_within_the_wait_is_503(api_factory):
    api = api_factory(decode_workers=1, decode_wait_s=0.05)
    with decode_slot(api.settings):
        r = api.pay("ann")
    body = assert_problem(r, 503, "server_busy")
    assert r.headers["retry-after"] == "1" and "decode" in body["detail"]
    assert api.count(Payment) == 0
    assert api.client.post("/v1/capture/analyze", headers=api.auth("kiosk"), files={
        "image": ("f.jpg", api.hands["ann"].probe[0], "image/jpeg")}).status_code == 200


def test_concurrent_requests_hold_at_most_decode_workers_slots(api_factory):
    api = api_factory(decode_workers=2, decode_wait_s=120)
    assert api.enroll("ann").status_code == 201
    SLOTS.peak = 0
    start = threading.Barrier(6)

    def pay(_: int) -> int:
        start.wait()
        return api.pay("ann").status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(pay, range(6)))
    assert codes == [201] * 6
    assert 1 <= SLOTS.peak <= 2 and SLOTS.active == 0
