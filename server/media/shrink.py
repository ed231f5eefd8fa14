"""Bringing a photo within an input size limit: its shape kept, its longest side at the limit.

Used by our clients before they send (a phone photo is 4032 × 3024; the hosted API, and so
this server by default, takes at most 1920 px a side) and by the server itself with
`--downscale-inputs`. Pure Pillow.
"""

from __future__ import annotations

from PIL import Image

from server.media.encode import encode_image
from server.media.formats import FORMAT_OF_PIL, ImageFormat

#: EXIF orientations that turn the picture a quarter: its displayed width is its height.
_QUARTER_TURNS = (5, 6, 7, 8)
_ORIENTATION = 0x0112
#: JPEG quality of a downscaled photo: a near-lossless step before the model sees it.
SHRUNK_JPEG_QUALITY = 95


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """The size as the picture is shown (EXIF orientation applied), from its header."""
    width, height = image.size
    if image.getexif().get(_ORIENTATION) in _QUARTER_TURNS:
        return height, width
    return width, height


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """`width` × `height` brought down to `max_side` on its longest side, shape kept."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def reduce_while_decoding(image: Image.Image, max_side: int) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale when that still leaves at least `max_side`
    on its longest side (the decoder skips the work; nothing is decoded yet)."""
    if image.format in ("JPEG", "MPO"):
        width, height = image.size
        target = fitted_size(width, height, max_side)
        image.draft("RGB", target)


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """A decoded, upright image brought down to `max_side` (Lanczos); unchanged if within."""
    size = fitted_size(*image.size, max_side)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def shrunk_bytes(image: Image.Image, source_format: str | None) -> tuple[bytes, ImageFormat]:
    """A shrunk image encoded for sending, with its colour profile: a JPEG source as JPEG
    (quality 95), a PNG or WebP source losslessly as PNG (transparency kept)."""
    fmt: ImageFormat = "jpeg" if FORMAT_OF_PIL.get(source_format or "") == "jpeg" else "png"
    extra = {"icc_profile": image.info["icc_profile"]} if image.info.get("icc_profile") else {}
    if fmt == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return encode_image(image, fmt, jpeg_quality=SHRUNK_JPEG_QUALITY, metadata=extra), fmt
