"""What our command-line clients send for a photo: the photo brought within the limits any
/v2/job server takes (the hosted API's, this server's default: at most 1920 px a side and
10 MB), and, when no size is asked for, an output of the photo's own shape.

A photo within the limits is sent byte for byte; a larger one is shrunk (shape kept,
EXIF orientation applied, JPEG stays JPEG at quality 95, PNG/WebP become PNG), and the
clients say so in one line.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from server.media.decode import ImageLimits
from server.media.formats import FORMAT_OF_SUFFIX, file_name
from server.media.shrink import oriented_size, reduce_while_decoding, shrink, shrunk_bytes
from server.wire.models import MAX_SIDE, MIN_SIDE, SIDE_UNIT
from server.wire.ratio import size_for_shape


@dataclass(frozen=True)
class Photo:
    """One input as sent: its bytes and file name, its size as shown (EXIF orientation
    applied; None when Pillow cannot read it: the server's check then says why), and, when
    it was shrunk, what it was (size and bytes) and the one line that says so."""

    data: bytes
    name: str
    size: tuple[int, int] | None
    original: tuple[tuple[int, int], int] | None = None
    note: str | None = None

    @property
    def shape(self) -> tuple[int, int] | None:
        """The photo's own size as shown (before any shrinking), or None if unreadable."""
        return self.original[0] if self.original else self.size

    def shrunk(self) -> dict[str, object] | None:
        """What a report says of a shrunk photo (None when sent as it was)."""
        if self.original is None or self.size is None:
            return None
        return {"image": self.name, "from": list(self.original[0]), "sent": list(self.size)}


def read_photo(path: Path, limits: ImageLimits) -> Photo:
    """`path` ready to send: shrunk when over `limits.max_side` or `limits.max_bytes`."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            size = oriented_size(image)
            if max(size) <= limits.max_side and len(data) <= limits.max_bytes:
                return Photo(data, path.name, size)
            return _shrunk(image, path, size, limits)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError):
        return Photo(data, path.name, None)  # sent as is: the server's rules say why not


def _shrunk(image: Image.Image, path: Path, size: tuple[int, int],
            limits: ImageLimits) -> Photo:
    source, before = image.format, path.stat().st_size
    reduce_while_decoding(image, limits.max_side)
    upright = shrink(ImageOps.exif_transpose(image), limits.max_side)
    data, fmt = shrunk_bytes(upright, source)
    same = FORMAT_OF_SUFFIX.get(path.suffix.lower()) == fmt
    name = path.name if same else file_name(fmt, path.stem)
    (w, h), mb = upright.size, 1024 * 1024
    if upright.size != size:
        note = (f"{path.name} is {size[0]}x{size[1]}, over the {limits.max_side} px a side a "
                f"/v2/job server takes: sent as {w}x{h}, same shape")
    else:
        note = (f"{path.name} is {before / mb:.1f} MB, over the {limits.max_bytes / mb:.0f} MB "
                f"a /v2/job server takes: sent re-encoded, {len(data) / mb:.1f} MB")
    return Photo(data, name, upright.size, (size, before), note)


def output_size(photo_size: tuple[int, int]) -> tuple[int, int]:
    """The [dev] output of the photo's shape: about 1 MP, each side 512–1040 in steps of
    16, the nearest to its ratio (the server's own rule for `aspect_ratio`)."""
    return size_for_shape(*photo_size, MIN_SIDE, MAX_SIDE, SIDE_UNIT)


def photo_shape(path: Path) -> tuple[int, int] | None:
    """The size of the photo at `path` as shown, from its header; None if unreadable."""
    try:
        with Image.open(path) as image:
            return oriented_size(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError):
        return None


#: Config fields that give the output a size: with none of them, the photo's shape does.
SIZE_FIELDS = ("width", "height", "aspect_ratio")


def with_photo_size(config: dict[str, object], shape: tuple[int, int] | None
                    ) -> dict[str, object]:
    """`config` with width and height of the photo's shape when it asks for no size (the
    wire's default, 1024 × 1024, is the hosted API's, not a choice a photo should get)."""
    if shape is None or any(config.get(name) is not None for name in SIZE_FIELDS):
        return config
    width, height = output_size(shape)
    return {**config, "width": width, "height": height}
