"""Hostile image files for the upload tests and ``scripts/security/hostile_images.py``.

Every maker builds its file from scratch, in a few milliseconds and without ever holding the
image it describes (the compressed streams are written from zero rows chunk by chunk):

- :func:`rle_bmp`: an 8-bit RLE BMP whose pixel data is the one "end of bitmap" escape; 1,080
  bytes say 30000×30000 (a decoder allocates 2.7 GB for it);
- :func:`deflate_tiff`: a grey TIFF with one Deflate strip of zeros (about 1 KB per MB);
- :func:`zero_png`: a valid PNG of any size (all black), built the same way;
- :func:`lying_png`: a PNG whose IHDR is not what follows it (``ihdr`` vs ``data``), or with a
  second IHDR;
- :func:`jpeg_with_stray_byte`: a small real JPEG with one junk byte after its APP0 segment (the
  old header walker gave up there) and, optionally, its frame header patched to claim another
  size (libjpeg then decodes the claimed size, padding the missing data);
- :data:`WEBP_BOMB`: 38 bytes of lossless WebP, 16383×16383 of one colour (made once with
  Pillow: ``Image.new("RGB", (16383, 16383), (120, 80, 60)).save(f, "WEBP", lossless=True,
  method=0, quality=0)``).
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

__all__ = ["WEBP_BOMB", "deflate_tiff", "jpeg_with_stray_byte", "lying_png", "rle_bmp",
           "small_jpeg", "zero_png"]

WEBP_BOMB = bytes.fromhex(
    "524946461e000000574542505650384c110000002ffebfff0f0750a8e295a7ff8188e87f0000")

_CHUNK = 8 << 20


def _zeros_deflated(nbytes: int) -> bytes:
    """zlib stream of ``nbytes`` zeros, compressed chunk by chunk."""
    comp = zlib.compressobj(9)
    out = []
    block = bytes(min(nbytes, _CHUNK))
    left = nbytes
    while left > 0:
        n = min(left, len(block))
        out.append(comp.compress(block[:n]))
        left -= n
    out.append(comp.flush())
    return b"".join(out)


def rle_bmp(width: int = 30000, height: int = 30000) -> bytes:
    """BI_RLE8 BMP of ``width`` × ``height`` whose data is only "end of bitmap" (1,080 bytes)."""
    palette = bytes(4 * 256)
    pixels = b"\x00\x01"  # RLE escape: end of bitmap
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835,
                       256, 0)
    head = struct.pack("<2sIHHI", b"BM", offset + len(pixels), 0, 0, offset)
    return head + info + palette + pixels


def deflate_tiff(width: int = 30000, height: int = 30000, strip_mb: int = 100) -> bytes:
    """Little-endian grey TIFF, Deflate (tag 259 = 8), one strip of ``strip_mb`` MB of zeros."""
    data = _zeros_deflated(min(width * height, strip_mb << 20))
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(data))]
    ifd_at = 8
    data_at = ifd_at + 2 + 12 * len(tags) + 4
    entries = b"".join(struct.pack("<HHII", tag, kind, 1, data_at if tag == 273 else value)
                       for tag, kind, value in tags)
    return b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", len(tags)) + entries \
        + b"\x00\x00\x00\x00" + data


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _ihdr(width: int, height: int) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def _idat(width: int, height: int) -> bytes:
    """IDAT of an all-black RGB image: each row is a filter byte 0 and 3 × width zeros."""
    return _chunk(b"IDAT", _zeros_deflated(height * (1 + 3 * width)))


def zero_png(width: int, height: int) -> bytes:
    """A valid all-black 8-bit RGB PNG of ``width`` × ``height``."""
    return (b"\x89PNG\r\n\x1a\n" + _ihdr(width, height) + _idat(width, height)
            + _chunk(b"IEND", b""))


def lying_png(ihdr: tuple[int, int], data: tuple[int, int],
              second_ihdr: tuple[int, int] | None = None) -> bytes:
    """A PNG whose IHDR says ``ihdr`` while its IDAT holds an image of ``data`` (width, height),
    optionally with a second IHDR chunk right after the first."""
    second = _ihdr(*second_ihdr) if second_ihdr else b""
    return (b"\x89PNG\r\n\x1a\n" + _ihdr(*ihdr) + second + _idat(*data)
            + _chunk(b"IEND", b""))


def small_jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A real baseline JPEG (JFIF APP0 first) of a noisy picture."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def jpeg_with_stray_byte(claim: tuple[int, int] | None = None, base: bytes | None = None
                         ) -> bytes:
    """``base`` (default :func:`small_jpeg`) with a 0x00 byte after APP0 and, if ``claim`` is
    given, its SOF0 width and height replaced by ``claim`` (width, height)."""
    data = bytearray(base or small_jpeg())
    assert data[2:4] == b"\xff\xe0", "expected APP0 right after SOI"
    app0_end = 4 + struct.unpack(">H", data[4:6])[0]
    if claim is not None:
        sof = data.index(b"\xff\xc0")
        data[sof + 5: sof + 9] = struct.pack(">HH", claim[1], claim[0])
    return bytes(data[:app0_end]) + b"\x00" + bytes(data[app0_end:])
