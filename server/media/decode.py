"""Decoding input images under the contract's rules.

Pure Pillow; the server runs this in a thread so the event loop never blocks on it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from server.errors import InvalidInputImage
from server.media.formats import FORMAT_OF_PIL, ImageFormat

MB = 1024 * 1024
#: Pillow's decompression-bomb guard, process-wide: it refuses images over twice this many
#: pixels (about 29 MP here, 179 MP by default) as soon as their header is read. Anything
#: under it reaches the side check below, whose message is clearer; nothing over 1920 px a
#: side is ever decoded either way.
Image.MAX_IMAGE_PIXELS = 4 * 1920 * 1920


@dataclass(frozen=True)
class ImageLimits:
    """Limits on one input image."""

    max_bytes: int = 10 * MB
    min_side: int = 256
    max_side: int = 1920


def _open(data: bytes, field: str, limits: ImageLimits) -> Image.Image:
    if not data:
        raise InvalidInputImage("is an empty file", field=field)
    if len(data) > limits.max_bytes:
        raise InvalidInputImage(
            f"is {len(data) / MB:.1f} MB, over the {limits.max_bytes / MB:.0f} MB limit",
            field=field,
        )
    try:
        # Image.open reads only the header: sizes are checked before any pixel is decoded.
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidInputImage("is not a readable PNG, JPEG or WebP image", field=field) from exc
    except Image.DecompressionBombError as exc:
        raise InvalidInputImage(f"has too many pixels: {exc}", field=field) from exc
    if image.format not in FORMAT_OF_PIL:
        raise InvalidInputImage(
            f"is {image.format}; only PNG, JPEG and WebP are accepted", field=field
        )
    return image


def _check_size(image: Image.Image, field: str, limits: ImageLimits) -> None:
    width, height = image.size
    if max(width, height) > limits.max_side:
        raise InvalidInputImage(
            f"is {width}x{height}; each side must be at most {limits.max_side} px", field=field
        )
    if min(width, height) < limits.min_side:
        raise InvalidInputImage(
            f"is {width}x{height}; each side must be at least {limits.min_side} px", field=field
        )
    # An MPO (a multi-picture JPEG, as phone cameras write: a depth map or a second
    # exposure after the photo) is a still image: its first picture is the photo.
    if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
        raise InvalidInputImage(
            f"is animated ({image.n_frames} frames); send a still image", field=field
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB on white: alpha composited, CMYK/palette/16-bit/float converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if image.mode != "F" or array.max() > 1.0 else 255.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def open_image(data: bytes, field: str, limits: ImageLimits) -> Image.Image:
    """The image's header checked (bytes, pixel bomb, format, sides, frames), no pixel
    decoded yet; InvalidInputImage naming `field` and the rule otherwise."""
    image = _open(data, field, limits)
    _check_size(image, field, limits)
    return image


def decode_input_image(data: bytes, field: str = "input", limits: ImageLimits | None = None
                       ) -> Image.Image:
    """Decode one input image, or raise InvalidInputImage naming `field` and the limit."""
    image = open_image(data, field, limits or ImageLimits())
    try:
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputImage(
            f"could not be decoded (truncated or corrupt data: {exc})", field=field
        ) from exc
    return _to_rgb(image)


def image_format(data: bytes) -> ImageFormat:
    """The format of image bytes that decode_input_image has accepted (header only)."""
    with Image.open(io.BytesIO(data)) as image:
        return FORMAT_OF_PIL[image.format or ""]
