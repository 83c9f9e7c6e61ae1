"""Uploaded images: size limits, content sniffing and decoding with OpenCV.

Each multipart file part is checked in this order:

1. size: above ``max_image_bytes`` → 413 ``payload_too_large`` naming the part;
2. magic bytes: not a PNG, JPEG, BMP, WebP or TIFF (a text file, a PDF, ...) → 415
   ``unsupported_media_type`` naming the part and file (the declared part Content-Type is not
   trusted);
3. declared dimensions (PNG and JPEG headers, before decoding): above ``max_image_pixels`` → 413;
4. decoding: OpenCV cannot decode it (truncated, corrupt) → 422 ``invalid_image``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from fastapi import UploadFile

from palmpay.config import Settings
from palmpay.payments.errors import PaymentError

__all__ = ["UploadedImage", "decode_image", "image_dimensions", "read_images", "sniff"]

log = logging.getLogger(__name__)

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


@dataclass(frozen=True)
class UploadedImage:
    """A decoded upload: ``part`` is ``<field>[<n>]``, ``image`` BGR uint8."""

    part: str
    filename: str
    image: np.ndarray = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.part} ({self.filename})" if self.filename else self.part


def sniff(data: bytes) -> str | None:
    """The image format from the first bytes, or None if it is not one we decode."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return None


def image_dimensions(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None if unknown."""
    if kind == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if kind == "jpeg":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return width, height
            i += 2 + length
    return None


def decode_image(data: bytes, part: str, filename: str, settings: Settings) -> UploadedImage:
    """Check and decode one uploaded file (see the module docstring for the errors)."""
    label = f"{part} ({filename})" if filename else part
    where = {"image": part, "filename": filename}
    if len(data) > settings.max_image_bytes:
        raise PaymentError("payload_too_large",
                       f"{label} is larger than {settings.max_image_bytes} bytes",
                       extra=where | {"limit": settings.max_image_bytes})
    if not data:
        raise PaymentError("invalid_image", f"{label} is empty", extra=where)
    kind = sniff(data)
    if kind is None:
        raise PaymentError("unsupported_media_type",
                       f"{label} is not a PNG, JPEG, BMP, WebP or TIFF image", extra=where)
    dims = image_dimensions(data, kind)
    if dims is not None and dims[0] * dims[1] > settings.max_image_pixels:
        raise PaymentError("payload_too_large",
                       f"{label} is {dims[0]}x{dims[1]} pixels, more than "
                       f"{settings.max_image_pixels}", extra=where)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise PaymentError("invalid_image", f"{label} could not be decoded as {kind}", extra=where)
    if image.shape[0] * image.shape[1] > settings.max_image_pixels:
        raise PaymentError("payload_too_large", f"{label} has more than "
                       f"{settings.max_image_pixels} pixels", extra=where)
    return UploadedImage(part, filename, image)


def read_images(
    uploads: Sequence[UploadFile], field_name: str, settings: Settings, minimum: int = 1
) -> list[UploadedImage]:
    """Read and decode the files of one multipart field (blocking: call from a worker
    thread, as sync routes are)."""
    if len(uploads) < minimum:
        raise PaymentError("validation_error", f"{field_name}: at least {minimum} image(s) needed",
                       extra={"errors": [{"field": field_name, "type": "too_short",
                                          "message": f"at least {minimum} file(s)"}]})
    if len(uploads) > settings.max_images:
        raise PaymentError("validation_error",
                       f"{field_name}: at most {settings.max_images} images per request",
                       extra={"errors": [{"field": field_name, "type": "too_long",
                                          "message": f"at most {settings.max_images} files"}]})
    images = []
    for n, upload in enumerate(uploads):
        data = upload.file.read(settings.max_image_bytes + 1)
        images.append(decode_image(data, f"{field_name}[{n}]", upload.filename or "", settings))
    return images
