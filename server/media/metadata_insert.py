"""Put EXIF and XMP into an already-encoded JPEG, PNG or WebP without re-encoding it.

Hand-written because Pillow writes metadata only while encoding: re-encoding a JPEG or a
lossy WebP would lose quality and cost a decode plus an encode per image, while a segment
or chunk splice is a byte copy. Each format's container rules are in its function.
"""

from __future__ import annotations

import struct
import zlib

from server.media.formats import ImageFormat

EXIF_HEADER = b"Exif\x00\x00"
XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_PNG_KEY = b"XML:com.adobe.xmp"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sniff_format(data: bytes) -> ImageFormat:
    """jpeg, png or webp from the first bytes, or ValueError."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise ValueError("not a JPEG, PNG or WebP image")


def has_c2pa_manifest(data: bytes) -> bool:
    """Whether an encoded JPEG, PNG or WebP carries an embedded C2PA manifest store: JUMBF
    in JPEG APP11 segments, a PNG `caBX` chunk, a WebP `C2PA` chunk (C2PA 2.1, appendix A).
    Splicing anything into such a file would break its signature."""
    fmt = sniff_format(data)
    if fmt == "jpeg":
        return any(marker == 0xEB and payload.startswith(b"JP") and b"jumb" in payload[:32]
                   for marker, payload in _jpeg_headers(data))
    if fmt == "png":
        return b"caBX" in _png_kinds(data)
    return b"C2PA" in _webp_kinds(data)


def _jpeg_headers(data: bytes):
    """(marker, payload) of each segment before the first scan."""
    position = 2
    while position + 4 <= len(data) and data[position + 1] != 0xDA:
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        yield data[position + 1], data[position + 4:position + 2 + length]
        position += 2 + length


def _png_kinds(data: bytes) -> set[bytes]:
    position, kinds = len(PNG_SIGNATURE), set()
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        kinds.add(kind)
        position += 12 + length
    return kinds


def _webp_kinds(data: bytes) -> set[bytes]:
    position, kinds = 12, set()
    while position + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[position:position + 8])
        kinds.add(kind)
        position += 8 + length + length % 2
    return kinds


def insert_metadata(data: bytes, fmt: ImageFormat, *, exif: bytes, xmp: bytes) -> bytes:
    """`data` with its EXIF and XMP replaced by `exif` (with or without the "Exif\\0\\0"
    header) and `xmp` (an XMP packet)."""
    tiff = exif.removeprefix(EXIF_HEADER)
    if fmt == "jpeg":
        return _jpeg(data, tiff, xmp)
    if fmt == "png":
        return _png(data, tiff, xmp)
    return _webp(data, tiff, xmp)


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("metadata too long for one JPEG segment")
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _jpeg(data: bytes, tiff: bytes, xmp: bytes) -> bytes:
    """APP1 Exif and APP1 XMP right after SOI (after APP0 JFIF when there is one); old
    APP1 Exif/XMP segments dropped; everything from the first scan on copied verbatim."""
    position, head, kept = 2, b"", []
    while position + 4 <= len(data):
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: entropy-coded data follows, copy the rest
            break
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        segment = data[position:position + 2 + length]
        payload = segment[4:]
        position += 2 + length
        if marker == 0xE0 and not head and payload.startswith(b"JFIF\x00"):
            head = segment
        elif not (marker == 0xE1 and payload.startswith((EXIF_HEADER, XMP_JPEG_HEADER))):
            kept.append(segment)
    ours = _jpeg_segment(0xE1, EXIF_HEADER + tiff) + _jpeg_segment(0xE1, XMP_JPEG_HEADER + xmp)
    return data[:2] + head + ours + b"".join(kept) + data[position:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def _png(data: bytes, tiff: bytes, xmp: bytes) -> bytes:
    """eXIf and an uncompressed iTXt XML:com.adobe.xmp chunk right after IHDR (eXIf must
    precede IDAT); old ones dropped; every other chunk copied verbatim."""
    position, chunks = len(PNG_SIGNATURE), []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position:position + 12 + length]
        position += 12 + length
        is_xmp = kind == b"iTXt" and chunk[8:].startswith(XMP_PNG_KEY + b"\x00")
        if kind != b"eXIf" and not is_xmp:
            chunks.append(chunk)
    # iTXt: keyword, NUL, compression flag 0, method 0, empty language tag and translation.
    itxt = _png_chunk(b"iTXt", XMP_PNG_KEY + b"\x00\x00\x00\x00\x00" + xmp)
    return PNG_SIGNATURE + chunks[0] + _png_chunk(b"eXIf", tiff) + itxt + b"".join(chunks[1:])


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) % 2)


def _webp_canvas(kind: bytes, payload: bytes) -> tuple[int, int, bool]:
    """Width, height and alpha of a simple-format WebP from its bitstream header (RFC 9649:
    VP8 keyframe header after the start code 9d 01 2a; VP8L 14-bit sizes and alpha bit)."""
    if kind == b"VP8L":
        bits = int.from_bytes(payload[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", payload[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    raise ValueError(f"not a WebP still image (first chunk {kind!r})")


def _webp(data: bytes, tiff: bytes, xmp: bytes) -> bytes:
    """EXIF and XMP chunks at the end (their place in the extended format), with the
    VP8X header's flags saying so; a simple-format file gets a VP8X header first."""
    position, chunks = 12, []
    while position + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[position:position + 8])
        payload = data[position + 8:position + 8 + length]
        position += 8 + length + length % 2
        if kind not in (b"EXIF", b"XMP "):
            chunks.append((kind, payload))
    if chunks[0][0] == b"VP8X":
        header = bytearray(chunks.pop(0)[1])
    else:
        width, height, has_alpha = _webp_canvas(*chunks[0])
        header = bytearray(struct.pack("<I", 0x10 if has_alpha else 0)
                           + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))
    header[0] |= 0x08 | 0x04  # EXIF and XMP present
    body = b"WEBP" + _riff_chunk(b"VP8X", bytes(header)) + b"".join(
        _riff_chunk(kind, payload) for kind, payload in chunks
    ) + _riff_chunk(b"EXIF", tiff) + _riff_chunk(b"XMP ", xmp)
    return b"RIFF" + struct.pack("<I", len(body)) + body
