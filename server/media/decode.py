"""Decoding input images under the contract's rules.

Pure Pillow; the server runs this in a thread so the event loop never blocks on it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from server.errors import InvalidInputImage
from server.media.formats import FORMAT_OF_PIL, ImageFormat
from server.media.shrink import fitted_size, reduce_while_decoding, shrink, shrunk_bytes

MB = 1024 * 1024
#: The most pixels an input may have: refused from its header, before any pixel is decoded
#: (about 29 MP; nothing over 1920 px a side is decoded then anyway) ...
MAX_PIXELS = 8 * 1920 * 1920
#: ... and with --downscale-inputs, which decodes larger photos to shrink them: 50 MP
#: (8160 × 6120, the largest common phone photo), at most 150 MB decoded.
MAX_DOWNSCALE_PIXELS = 50_000_000
#: Pillow's decompression-bomb guard, process-wide, a backstop behind the checks above (and
#: for the photos our clients shrink before sending): it refuses over twice this at open.
Image.MAX_IMAGE_PIXELS = 128_000_000


@dataclass(frozen=True)
class ImageLimits:
    """Limits on one input image. `downscale`: an image over `max_side` is shrunk to it
    (shape kept) instead of refused."""

    max_bytes: int = 10 * MB
    min_side: int = 256
    max_side: int = 1920
    downscale: bool = False

    @property
    def max_pixels(self) -> int:
        """The most pixels accepted, from the header."""
        return MAX_DOWNSCALE_PIXELS if self.downscale else MAX_PIXELS


#: The readers Pillow may use: the contract's formats only (its JPEG reader hands MPO files
#: to the MPO one). Left to itself, Image.open tries every reader it has (DDS, Spider, …),
#: whose errors on crafted headers are not its usual ones.
READERS = ("PNG", "JPEG", "WEBP")
#: EXIF orientation → the transposition that shows the picture upright (EXIF 2.3, 0x0112).
ORIENTATION = 0x0112
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
           6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def _named_format(data: bytes) -> str | None:
    """The format of bytes outside the contract, by its readers' magic-number checks only
    (none of its code beyond those prefix comparisons runs)."""
    prefix = data[:16]
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            if name not in FORMAT_OF_PIL and accept is not None and accept(prefix):
                return name
        except Exception:  # a prefix check that chokes on these bytes: not that format
            continue
    return None


def _read_header(data: bytes, field: str) -> Image.Image:
    """Image.open under the contract's readers only; any failure is InvalidInputImage."""
    try:
        # Image.open reads only the header: sizes are checked before any pixel is decoded.
        return Image.open(io.BytesIO(data), formats=READERS)
    except Image.DecompressionBombError as exc:
        raise InvalidInputImage(f"has too many pixels: {exc}", field=field) from exc
    except UnidentifiedImageError as exc:
        other = _named_format(data)
        if other is not None:
            raise InvalidInputImage(f"is {other}; only PNG, JPEG and WebP are accepted",
                                    field=field) from exc
        raise InvalidInputImage("is not a readable PNG, JPEG or WebP image",
                                field=field) from exc
    except MemoryError:
        raise
    except Exception as exc:  # any reader failure on crafted bytes is the input's fault
        raise InvalidInputImage(f"is not a readable PNG, JPEG or WebP image ({exc})",
                                field=field) from exc


def _open(data: bytes, field: str, limits: ImageLimits) -> Image.Image:
    if not data:
        raise InvalidInputImage("is an empty file", field=field)
    if len(data) > limits.max_bytes:
        raise InvalidInputImage(
            f"is {len(data) / MB:.1f} MB, over the {limits.max_bytes / MB:.0f} MB limit",
            field=field,
        )
    image = _read_header(data, field)
    width, height = image.size
    if width * height > limits.max_pixels:
        raise InvalidInputImage(f"has too many pixels: {width}x{height} is over "
                                f"{limits.max_pixels:,}", field=field)
    if image.format not in FORMAT_OF_PIL:
        raise InvalidInputImage(
            f"is {image.format}; only PNG, JPEG and WebP are accepted", field=field
        )
    return image


def _check_size(image: Image.Image, field: str, limits: ImageLimits) -> None:
    width, height = image.size
    if max(width, height) > limits.max_side:
        if not limits.downscale:
            raise InvalidInputImage(f"is {width}x{height}; each side must be at most "
                                    f"{limits.max_side} px", field=field)
        if min(fitted_size(width, height, limits.max_side)) < limits.min_side:
            raise InvalidInputImage(f"is {width}x{height}; brought down to {limits.max_side} px "
                                    f"its short side would be under {limits.min_side} px",
                                    field=field)
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


def _upright(image: Image.Image) -> Image.Image:
    """The picture as its EXIF orientation says it is seen. Only the orientation is read:
    ImageOps.exif_transpose also rewrites the EXIF, and fails on a tag of the wrong type
    (which cameras and editors write). EXIF that cannot be read is ignored."""
    try:
        orientation = image.getexif().get(ORIENTATION)
    except Exception:  # unreadable EXIF: shown as stored
        return image
    method = UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


def decode_input_image(data: bytes, field: str = "input", limits: ImageLimits | None = None
                       ) -> Image.Image:
    """Decode one input image, or raise InvalidInputImage naming `field` and the limit.

    With `limits.downscale`, an image over `max_side` comes back shrunk to it (shape kept).
    """
    limits = limits or ImageLimits()
    image = open_image(data, field, limits)
    try:
        image.seek(0)
        if limits.downscale:
            reduce_while_decoding(image, limits.max_side)
        image.load()
        image = _to_rgb(_upright(image))
    except MemoryError:
        raise
    except Exception as exc:  # a decoder failure on crafted bytes is the input's fault
        raise InvalidInputImage(
            f"could not be decoded (truncated or corrupt data: {exc})", field=field
        ) from exc
    return shrink(image, limits.max_side) if limits.downscale else image


def decode_input(data: bytes, field: str = "input", limits: ImageLimits | None = None
                 ) -> tuple[Image.Image, bytes, ImageFormat]:
    """decode_input_image, with the bytes and format to pass on (a forwarded job's input,
    the C2PA parent): re-encoded when the image was shrunk, so they show what was edited."""
    limits = limits or ImageLimits()
    image = decode_input_image(data, field, limits)
    fmt = image_format(data)
    if limits.downscale and max(image.size) == limits.max_side:
        with Image.open(io.BytesIO(data), formats=READERS) as original:
            if max(original.size) > limits.max_side:
                data, fmt = shrunk_bytes(image, original.format)
    return image, data, fmt


def image_format(data: bytes) -> ImageFormat:
    """The format of image bytes that decode_input_image has accepted (header only)."""
    with Image.open(io.BytesIO(data), formats=READERS) as image:
        return FORMAT_OF_PIL[image.format or ""]
