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
``decode_wait_s``), the files are read, and the slot is held until the ``with`` block ends, when
the images are dropped. Each file is decoded to BGR uint8 when :attr:`UploadedImage.image` (or
:meth:`UploadedImage.reduced`) is first used inside the block (truncated, corrupt or not
matching its header → 422 ``invalid_image`` then), so a checkout that has its good frames
before the last file never decodes the rest. Problems name the part (``image``:
``<field>[<n>]``) and the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from fastapi import UploadFile

from palmpay.api.decode import (
    REDUCED_FLAGS,
    ImageHeader,
    check_request,
    decode,
    decode_slot,
    read_header,
)
from palmpay.config import Settings
from palmpay.payments.errors import PaymentError

__all__ = ["UploadedImage", "decode_image", "open_images"]

log = logging.getLogger(__name__)


class UploadedImage:
    """An upload whose header passed the checks: ``part`` is ``<field>[<n>]``, :attr:`image`
    its pixels (BGR uint8), decoded on first use; :meth:`reduced` a JPEG at 1/2, 1/4 or 1/8
    scale. Use it only inside the :func:`open_images` block (the decode slot)."""

    __slots__ = ("_data", "_decoded", "_reduced", "filename", "header", "part")

    def __init__(self, part: str, filename: str, data: bytes, header: ImageHeader) -> None:
        self.part = part
        self.filename = filename
        self.header = header
        self._data = data
        self._decoded: np.ndarray | None = None
        self._reduced: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return (f"UploadedImage({self.part!r}, {self.filename!r}, {self.header.kind} "
                f"{self.header.width}x{self.header.height})")

    @property
    def label(self) -> str:
        return _label(self.part, self.filename)

    @property
    def image(self) -> np.ndarray:
        """The whole image, BGR uint8 (decoded on first use; 422 ``invalid_image`` if it does
        not decode to its header's size)."""
        if self._decoded is None:
            self._decoded = self._decode(1)
        return self._decoded

    def can_reduce(self, factor: int) -> bool:
        """Whether :meth:`reduced` can decode at 1/``factor`` (JPEG, 2, 4 or 8)."""
        return self.header.kind == "jpeg" and factor in REDUCED_FLAGS and bool(self._data)

    def reduced(self, factor: int) -> np.ndarray:
        """The image at 1/``factor`` of each side (ceil), decoded so by libjpeg (see
        :meth:`can_reduce`); ``factor`` 1 is :attr:`image`."""
        if factor == 1:
            return self.image
        if factor not in self._reduced:
            self._reduced[factor] = self._decode(factor)
        return self._reduced[factor]

    def release(self, keep_image: bool = False) -> None:
        """Drop the bytes and pixels (the slot is given back); with ``keep_image`` decode
        :attr:`image` first and keep it."""
        if keep_image:
            self.image  # noqa: B018  (decoded now, kept)
        else:
            self._decoded = None
        self._data = b""
        self._reduced.clear()

    def _decode(self, factor: int) -> np.ndarray:
        if not self._data:
            raise RuntimeError(f"{self.label} was used after its decode slot was released")
        where = {"image": self.part, "filename": self.filename}
        return decode(self._data, self.header, self.label, where, reduce=factor)


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


def decode_image(data: bytes, part: str, filename: str, settings: Settings) -> UploadedImage:
    """Check and decode one file on its own (every check of :func:`open_images`, the slot
    held only while decoding; for callers that keep a single small image): its pixels stay,
    its bytes go, so only :attr:`UploadedImage.image` can be used afterwards."""
    header = _checked(data, part, filename, settings)
    check_request([header], part, settings)
    with decode_slot(settings):
        upload = UploadedImage(part, filename, data, header)
        upload.release(keep_image=True)
        return upload


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
                images.append(UploadedImage(part, filename, _read(upload, settings), header))
            yield images
        finally:
            for image in images:
                image.release()  # the bytes and arrays go with the slot
            images.clear()
