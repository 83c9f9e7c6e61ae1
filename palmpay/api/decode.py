"""The one guarded image decode path: header first, pixel budgets, then a bounded decode.

Nothing is decoded before the image's header has been read and its cost checked against the
budgets, because a few hundred bytes can describe an image of gigabytes (an RLE BMP, a Deflate
TIFF, a lossless WebP of one colour). Each file goes through:

1. :func:`sniff`: the format from its magic bytes. Only what a camera sends is accepted (JPEG,
   PNG, WebP, :data:`ALLOWED`); BMP, TIFF, GIF and anything else → 415
   ``unsupported_media_type``. The declared part Content-Type is not trusted.
2. :func:`read_header`: Pillow parses the header (``PIL.Image.open`` is lazy: ``.size`` without
   decoding; its JPEG parser skips stray bytes between markers the way libjpeg does, so a junk
   byte after APP0 no longer hides the frame size). Header unreadable → 422 ``invalid_image``.
   Its *cost* (pixels × :attr:`ImageHeader.weight`) above ``max_image_pixels`` → 413
   ``payload_too_large``. ``PIL.Image.MAX_IMAGE_PIXELS`` is set to the same limit, so Pillow's
   own ``DecompressionBombError`` is a second net (also 413).
3. :func:`check_request`: the summed cost of all the files of a request above
   ``max_request_pixels`` → 413, still before anything is decoded.
4. :func:`decode_slot`: at most ``decode_workers`` requests hold decoded images at a time in the
   whole process; others wait for a slot up to ``decode_wait_s``, then get 503 ``server_busy``
   (with ``Retry-After``). The slot is held for as long as the decoded images live (decode and
   the palm pipeline), so a burst of large uploads queues instead of adding up.
5. :func:`decode`: ``cv2.imdecode`` into BGR uint8 (EXIF orientation applied, as before), a
   JPEG optionally at 1/2, 1/4 or 1/8 scale (``reduce``: the checkout decodes later frames of
   a large-palmed presentation so, :meth:`palmpay.api.palms.PalmDirectory.probe_live`); a
   result whose size differs from the header's (a lying header) or no result (truncated,
   corrupt) → 422 ``invalid_image``. :mod:`.images` decodes each file when it is first used,
   still inside the slot.

Memory per slot is about 3 bytes × ``max_request_pixels`` held plus about 3 bytes × the largest
image while it is decoded (OpenCV copies its result into a numpy array), so about 6 bytes ×
``max_request_pixels`` × ``decode_workers`` for the process; ``docs/security/images.md`` has
the measured figures. A JPEG of more than one scan (progressive, non-interleaved) keeps all its
DCT coefficients while decoding, so its :attr:`~ImageHeader.weight` is 2: it counts twice
towards both budgets. Importing this module fixes glibc's mmap threshold (see
:func:`_return_large_buffers_to_the_system`), so that freed frames go back to the system rather
than staying in the heap of each worker thread. ``PIL.Image.MAX_IMAGE_PIXELS`` is process-wide:
it is set to the calling app's ``max_image_pixels`` before each header is read.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from palmpay.config import Settings
from palmpay.cputime import stage
from palmpay.payments.errors import PaymentError

__all__ = ["ALLOWED", "REDUCED_FLAGS", "ImageHeader", "check_request", "decode", "decode_slot",
           "read_header", "sniff"]

log = logging.getLogger(__name__)

#: Formats accepted (sniffed name -> Pillow format name).
ALLOWED: dict[str, str] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}

#: Magic bytes of the formats we recognise, accepted or not (to name them in the 415).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"8BPS", "psd"),
    (b"\x00\x00\x00\x0cjP  ", "jpeg2000"),
    (b"\xff\x4f\xff\x51", "jpeg2000"),
    (b"#?RADIANCE", "hdr"),
    (b"\x76\x2f\x31\x01", "exr"),
)
_NETPBM = (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"PF", b"Pf")

# PNG text chunks (tEXt/zTXt/iTXt) are read while parsing the header; bound what a zTXt bomb
# may inflate to (Pillow's defaults: 1 MB per chunk, 64 MB in all).
PngImagePlugin.MAX_TEXT_CHUNK = 256 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = 1024 * 1024
# Above MAX_IMAGE_PIXELS Pillow warns; our own check answers 413 right after, so the warning
# says nothing new (above twice the limit Pillow raises DecompressionBombError, caught below).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning, module="PIL.Image")

#: Allocations from this size up get their own mapping (glibc ``M_MMAP_THRESHOLD``).
MMAP_THRESHOLD = 1 << 20


def _return_large_buffers_to_the_system() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (where glibc is the allocator).

    glibc raises the threshold (up to 32 MB) each time a mapped block is freed, after which
    decoded frames come from the heap of the worker thread that decoded them; each of the
    server's threads then keeps the last frames' memory as its own free heap, and RSS grows
    with the number of threads that ever decoded a large image instead of with
    ``decode_workers``. A fixed threshold keeps every image-sized buffer a mapping of its own,
    returned to the system when freed. Returns whether it was set.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        return False


_return_large_buffers_to_the_system()


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header declares. ``weight``: decode memory per pixel relative to a baseline
    JPEG/PNG/WebP (2 for a JPEG of more than one scan, SOS marker: progressive or
    non-interleaved, libjpeg then buffers every DCT coefficient); ``cost`` = pixels × weight
    is what the budgets count."""

    kind: str
    width: int
    height: int
    weight: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def cost(self) -> int:
        return self.pixels * self.weight


def sniff(data: bytes) -> str | None:
    """The file's format from its first bytes (accepted or not), or None if unknown."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:2] in _NETPBM and len(data) > 2 and data[2:3].isspace():
        return "netpbm"
    return None


def _problem(code: str, detail: str, where: Mapping[str, Any], **extra: Any) -> PaymentError:
    return PaymentError(code, detail, extra={**where, **extra})


def read_header(data: bytes, label: str, where: Mapping[str, Any], settings: Settings
                ) -> ImageHeader:
    """Sniff and parse the header of one file and check its cost (nothing is decoded).

    ``label`` names the file in ``detail``; ``where`` (``image``, ``filename``) goes into the
    problem. Raises 415 / 422 / 413 as described in the module docstring.
    """
    if not data:
        raise _problem("invalid_image", f"{label} is empty", where)
    kind = sniff(data)
    if kind not in ALLOWED:
        what = f"a {kind.upper()} image" if kind else "not an image we recognise"
        raise _problem("unsupported_media_type",
                       f"{label} is {what}: send JPEG, PNG or WebP", where)
    limit = settings.max_image_pixels
    declared = _webp_canvas(data) if kind == "webp" else None
    if declared is not None and declared[0] * declared[1] > limit:
        # Before Pillow: its WebP reader reserves two canvases (8 bytes a pixel) on open.
        raise _too_large(label, where, kind, *declared, limit=limit)
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with Image.open(io.BytesIO(data), formats=[ALLOWED[kind]]) as im:
            width, height = im.size
            multi_scan = kind == "jpeg" and (bool(im.info.get("progressive"))
                                             or data.count(b"\xff\xda") > 1)
    except Image.DecompressionBombError:
        log.info("413: %s: Pillow refused it as a decompression bomb", label)
        raise _problem("payload_too_large", f"{label} declares more than {2 * limit} pixels, "
                       f"more than the {limit} accepted", where, limit=limit) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            IndexError, KeyError, TypeError) as err:  # Pillow's header parsers raise these
        log.info("422: %s: unreadable %s header (%s)", label, kind, type(err).__name__)
        raise _problem("invalid_image", f"{label} has no readable {kind.upper()} header",
                       where) from None
    if width <= 0 or height <= 0:
        raise _problem("invalid_image", f"{label} declares {width}x{height} pixels", where)
    header = ImageHeader(kind, width, height, 2 if multi_scan else 1)
    if header.cost > limit:
        raise _too_large(label, where, kind, width, height, limit=limit, weight=header.weight)
    return header


def _too_large(label: str, where: Mapping[str, Any], kind: str, width: int, height: int, *,
               limit: int, weight: int = 1) -> PaymentError:
    log.info("413: %s declares %dx%d (%s, weight %d)", label, width, height, kind, weight)
    scan = " multi-scan" if weight > 1 else ""
    counted = f" (counted {weight} times)" if weight > 1 else ""
    return _problem("payload_too_large",
                    f"{label} is a {width}x{height}{scan} {kind.upper()} image{counted}, more "
                    f"than the {limit} pixels accepted", where, limit=limit)


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first chunk of a WebP (VP8X canvas, VP8L or VP8 frame)."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return (1 + int.from_bytes(data[24:27], "little"),
                1 + int.from_bytes(data[27:30], "little"))
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF)
    return None


def check_request(headers: Sequence[ImageHeader], field_name: str, settings: Settings) -> None:
    """413 when the files of one request cost more than ``max_request_pixels`` together."""
    total = sum(h.cost for h in headers)
    limit = settings.max_request_pixels
    if total > limit:
        log.info("413: %s: %d images cost %d pixels", field_name, len(headers), total)
        raise PaymentError("payload_too_large",
                           f"{field_name}: the {len(headers)} images hold {total} pixels "
                           f"together, more than the {limit} accepted per request",
                           extra={"image": field_name, "limit": limit})


#: JPEG decode scales (libjpeg's DCT scaling): 1/2, 1/4, 1/8 of each side.
REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}


def decode(data: bytes, header: ImageHeader, label: str, where: Mapping[str, Any],
           reduce: int = 1) -> np.ndarray:
    """Decode a file whose header passed :func:`read_header` into BGR uint8 (call inside
    :func:`decode_slot`; CPU time counted as stage ``decode``, :mod:`palmpay.cputime`).

    ``reduce`` (2, 4 or 8, JPEG only) decodes at that fraction of each side, ceil(side /
    reduce) pixels, in the DCT: fewer pixels made, not made and thrown away."""
    if reduce != 1 and (reduce not in REDUCED_FLAGS or header.kind != "jpeg"):
        raise ValueError(f"reduce={reduce}: only 2, 4 or 8, and only for JPEG")
    with stage("decode"):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED_FLAGS.get(reduce,
                                                                              cv2.IMREAD_COLOR))
    if image is None or image.size == 0:
        raise _problem("invalid_image", f"{label} could not be decoded as "
                       f"{header.kind.upper()}", where)
    expected = (-(-header.width // reduce), -(-header.height // reduce))
    if sorted(image.shape[:2]) != sorted(expected):
        log.warning("422: %s decoded to %dx%d, header said %dx%d (1/%d)", label, image.shape[1],
                    image.shape[0], header.width, header.height, reduce)
        raise _problem("invalid_image", f"{label} does not match its own header", where)
    return image


class _Slots:
    """Process-wide count of requests holding decoded images (the memory is the process's)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.active = 0  # requests holding a slot
        self.waiting = 0  # requests waiting for one
        self.peak = 0  # most slots held at once since start (or since a test reset it)

    def acquire(self, limit: int, timeout: float) -> bool:
        with self._cond:
            self.waiting += 1
            try:
                if not self._cond.wait_for(lambda: self.active < limit, timeout):
                    return False
            finally:
                self.waiting -= 1
            self.active += 1
            self.peak = max(self.peak, self.active)
            return True

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify()


SLOTS = _Slots()


@contextmanager
def decode_slot(settings: Settings) -> Iterator[None]:
    """Hold one of ``decode_workers`` decode slots (blocking; sync routes run in worker
    threads). Waits up to ``decode_wait_s``, then raises 503 ``server_busy``."""
    if not SLOTS.acquire(settings.decode_workers, settings.decode_wait_s):
        log.warning("503: no decode slot free within %.1f s", settings.decode_wait_s)
        raise PaymentError("server_busy", f"all {settings.decode_workers} image decode slots "
                           f"stayed busy for {settings.decode_wait_s:g} s; retry",
                           headers={"Retry-After": str(max(1, round(settings.decode_wait_s)))})
    try:
        yield
    finally:
        SLOTS.release()
