"""The one place that knows image formats: names, media types, file extensions, Pillow's names."""

from __future__ import annotations

from typing import Literal

ImageFormat = Literal["jpeg", "png", "webp"]
FORMATS: tuple[ImageFormat, ...] = ("jpeg", "png", "webp")

#: Our format → its media type.
MEDIA_TYPES: dict[ImageFormat, str] = {"jpeg": "image/jpeg", "png": "image/png",
                                       "webp": "image/webp"}
#: Media types clients send → our format (`image/jpg` is common, if wrong).
FORMAT_OF_MEDIA_TYPE: dict[str, ImageFormat] = {
    "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/png": "png", "image/webp": "webp"}
#: Our format → the file extension we write.
EXTENSIONS: dict[ImageFormat, str] = {"jpeg": "jpg", "png": "png", "webp": "webp"}
#: File suffixes we read → our format.
FORMAT_OF_SUFFIX: dict[str, ImageFormat] = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg",
                                            ".webp": "webp"}
#: Pillow's format names → ours (MPO is a multi-picture JPEG, as phone cameras write).
FORMAT_OF_PIL: dict[str, ImageFormat] = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png",
                                         "WEBP": "webp"}
#: Our format → the name Pillow saves it under.
PIL_NAMES: dict[ImageFormat, str] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


def file_name(fmt: ImageFormat, stem: str = "output") -> str:
    """e.g. output.jpg, input.png."""
    return f"{stem}.{EXTENSIONS[fmt]}"


def media_type_of_name(name: str) -> str | None:
    """The media type of a file name we wrote (output.jpg → image/jpeg), else None."""
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    fmt = FORMAT_OF_SUFFIX.get(suffix)
    return MEDIA_TYPES[fmt] if fmt else None
