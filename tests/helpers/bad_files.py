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


def exif_segment(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """An EXIF block (little-endian TIFF, one IFD) holding `entries`: (tag, type, count,
    value bytes); values over 4 bytes go after the IFD, as the TIFF layout says."""
    offset = 8 + 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in entries:
        if len(value) > 4:
            ifd += struct.pack("<HHII", tag, kind, count, offset + len(extra))
            extra += value
        else:
            ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + extra


def jpeg_rotated_with_mistyped_tag(width: int = 320, height: int = 480) -> bytes:
    """A JPEG whose EXIF says "rotate 90° clockwise" (orientation 6) and stores XResolution,
    a RATIONAL, as text: Pillow's exif_transpose fails rewriting it."""
    exif = exif_segment([(0x0112, 3, 1, struct.pack("<H", 6)),
                         (0x011A, 2, 8, b"seventy\0")])
    return image_bytes(width, height, "JPEG", exif=exif)


def jpeg_with_broken_exif(width: int = 320, height: int = 480) -> bytes:
    """A JPEG whose EXIF block is cut short in its first IFD."""
    return image_bytes(width, height, "JPEG", exif=b"Exif\0\0II*\0\x08\0\0\0\x09\0\x12\x01")


def dds_header(width: int = 512, height: int = 512) -> bytes:
    """A DirectDraw Surface header with no pixel format flags: Pillow's DDS reader raises
    NotImplementedError, which no image reader of the contract's formats does."""
    header = struct.pack("<4sIIII", b"DDS ", 124, 0x1007, height, width)
    return header + bytes(128 - len(header)) + bytes(width * height // 2)
