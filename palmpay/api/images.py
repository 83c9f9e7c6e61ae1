"""Uploaded images: the multipart side of the one guarded decode path (:mod:`.decode`).

:func:`open_images` is how a route gets the images of one multipart field::

    with open_images(frames, "frames", settings, minimum=1) as decoded:
        templates = palms.probe(decoded)

Before anything is decoded, every file of the field is checked, in this order:

1. count: fewer than ``minimum`` or more than ``max_images`` files → 422 ``validation_error``;
2. size: above ``max_image_bytes`` → 413 ``payload_too_large`` naming the part;
3. format and header (:func:`palmpay.api.decode.read_header`): not JPEG, PNG or WebP → 415
   ``unsupported_media_type``; no readable header → 422 ``invalid_image``; more than
   ``max_image_pixels`` → 413;
4. the whole field above ``max_request_pixels`` → 413 (:func:`~palmpay.api.decode.check_request`).

Then one of the process's ``decode_workers`` slots is taken (503 ``server_busy`` after
``decode_wait_s``), the files are decoded to BGR uint8 (truncated, corrupt or not matching their
header → 422 ``invalid_image``), and the slot is held until the ``with`` block ends, when the
decoded images are dropped. Problems name the part (``image``: ``<field>[<n>]``) and the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from fastapi import UploadFile

from palmpay.api.decode import ImageHeader, check_request, decode, decode_slot, read_header
from palmpay.config import Settings
from palmpay.payments.errors import PaymentError

__all__ = ["UploadedImage", "decode_image", "open_images"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadedImage:
    """A decoded upload: ``part`` is ``<field>[<n>]``, ``image`` BGR uint8."""

    part: str
    filename: str
    image: np.ndarray = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.part} ({self.filename})" if self.filename else self.part


def _label(part: str, filename: str) -> str:
    return f"{part} ({filename})" if filename else part


def _checked(data: bytes, part: str, filename: str, settings: Settings) -> ImageHeader:
    """Steps 2 and 3 of the module docstring for one file."""
    where = {"image": part, "filename": filename}
    label = _label(part, filename)
    if len(data) > settings.max_image_bytes:
        raise PaymentError("payload_too_large",
                           f"{label} is larger than {settings.max_image_bytes} bytes",
                           extra=where | {"limit": settings.max_image_bytes})
    return read_header(data, label, where, settings)


def _decoded(data: bytes, header: ImageHeader, part: str, filename: str) -> UploadedImage:
    where = {"image": part, "filename": filename}
    return UploadedImage(part, filename, decode(data, header, _label(part, filename), where))


def decode_image(data: bytes, part: str, filename: str, settings: Settings) -> UploadedImage:
    """Check and decode one file on its own (every check of :func:`open_images`, the slot
    held only while decoding; for callers that keep a single small image)."""
    header = _checked(data, part, filename, settings)
    check_request([header], part, settings)
    with decode_slot(settings):
        return _decoded(data, header, part, filename)


def _read(upload: UploadFile, settings: Settings) -> bytes:
    upload.file.seek(0)
    return upload.file.read(settings.max_image_bytes + 1)


@contextmanager
def open_images(uploads: Sequence[UploadFile], field_name: str, settings: Settings,
                minimum: int = 1) -> Iterator[list[UploadedImage]]:
    """Check every file of one multipart field, then decode them inside a decode slot held for
    the ``with`` block (blocking: call from a worker thread, as sync routes are)."""
    if len(uploads) < minimum:
        raise PaymentError("validation_error", f"{field_name}: at least {minimum} image(s) needed",
                           extra={"errors": [{"field": field_name, "type": "too_short",
                                              "message": f"at least {minimum} file(s)"}]})
    if len(uploads) > settings.max_images:
        raise PaymentError("validation_error",
                           f"{field_name}: at most {settings.max_images} images per request",
                           extra={"errors": [{"field": field_name, "type": "too_long",
                                              "message": f"at most {settings.max_images} files"}]})
    parts = [(f"{field_name}[{n}]", upload.filename or "") for n, upload in enumerate(uploads)]
    # Headers only: the bytes are read again inside the slot, so a waiting request holds none.
    headers = [_checked(_read(upload, settings), part, filename, settings)
               for upload, (part, filename) in zip(uploads, parts, strict=True)]
    check_request(headers, field_name, settings)
    images: list[UploadedImage] = []
    with decode_slot(settings):
        try:
            for upload, header, (part, filename) in zip(uploads, headers, parts, strict=True):
                images.append(_decoded(_read(upload, settings), header, part, filename))
            yield images
        finally:
            images.clear()  # the arrays go with the slot
