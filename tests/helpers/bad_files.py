"""Hostile and odd input files for the bad-input catalogue, made in memory with Pillow."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

from PIL import Image

from helpers.images import image_bytes


def png_claiming_size(width: int, height: int) -> bytes:
    """A small real PNG whose IHDR is patched to claim `width`×`height` (CRC fixed up).

    Its pixel data stays that of a 300×300 image, so a server that tried to decode it
    would fail on truncated data; one that checks the header first refuses it by size.
    """
    png = image_bytes(300, 300, "PNG")
    # Layout: 8-byte signature, then IHDR: length(4) "IHDR"(4) data(13) crc(4).
    ihdr_data = struct.pack(">II", width, height) + png[24:29]
    chunk = b"IHDR" + ihdr_data
    return png[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


def animated_webp(frames: int = 3, size: int = 300) -> bytes:
    """An animated WebP of `frames` differently coloured frames."""
    images = [Image.new("RGB", (size, size), (60 * i, 80, 160)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "WEBP", save_all=True, append_images=images[1:], duration=100)
    return buffer.getvalue()


def png_16bit(width: int = 320, height: int = 320) -> bytes:
    """A 16-bit greyscale PNG (mode I;16) with a gradient."""
    image = Image.linear_gradient("L").resize((width, height)).convert("I;16")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def cmyk_jpeg(width: int = 320, height: int = 320) -> bytes:
    """A CMYK JPEG (as print workflows write them)."""
    return image_bytes(width, height, "JPEG", mode="CMYK", color=(0, 120, 200, 10))


def truncated_png() -> bytes:
    """The first half of a real 640×480 PNG: the header is fine, the pixels are cut."""
    from helpers.images import gradient_png

    data = gradient_png(640, 480)
    return data[: len(data) // 2]


class CountingBody:
    """A request body streamed in chunks that counts how much the client really sent."""

    def __init__(self, total: int, chunk: int = 1 << 20) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    def __iter__(self) -> Iterator[bytes]:
        block = b"x" * self.chunk
        while self.sent < self.total:
            piece = block[: min(self.chunk, self.total - self.sent)]
            self.sent += len(piece)
            yield piece
