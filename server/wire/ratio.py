"""Aspect ratios (`W:H`): the rule the hosted API applies, and the output size a ratio means
for a job type whose size is width × height within bounds."""

from __future__ import annotations

import math
import re

from pydantic_core import PydanticCustomError

_RATIO = re.compile(r"^([0-9]{1,5}):([0-9]{1,5})$")
ASPECT_RULE = "must be W:H with positive integers, between 21:9 and 9:21"
#: The pixels a size for a ratio or a shape aims at: about 1 MP, Kontext's training size.
SHAPE_AREA = 1024 * 1024


def check_ratio(value: object) -> object:
    """A pydantic before-validator: `value` stripped, or an `aspect_ratio` error."""
    if not isinstance(value, str):
        return value  # strict str typing reports the type error
    match = _RATIO.match(value.strip())
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise PydanticCustomError("aspect_ratio", ASPECT_RULE)
    width, height = int(match[1]), int(match[2])
    # Integer cross-multiplication: 21:9 itself passes exactly, with no float rounding.
    if width * 9 > height * 21 or height * 9 > width * 21:
        raise PydanticCustomError("aspect_ratio", ASPECT_RULE)
    return value.strip()


def refuse_ratio_with_size(data: object) -> object:
    """A pydantic model before-validator: aspect_ratio and width/height exclude each other."""
    if isinstance(data, dict) and data.get("aspect_ratio") is not None \
            and ("width" in data or "height" in data):
        # A model-level error has no location: `field` in its context names the field.
        raise PydanticCustomError("aspect_ratio_with_size",
                                  "cannot be combined with width or height",
                                  {"field": "aspect_ratio"})
    return data


def ratio_of_size(width: int | None, height: int | None) -> str | None:
    """The reduced `W:H` of a width × height given instead of aspect_ratio (None: neither
    given); a pydantic error naming the field when one is missing or the shape is too long."""
    if width is None and height is None:
        return None
    if width is None or height is None:
        raise PydanticCustomError("size_pair", "width and height go together",
                                  {"field": "width" if width is None else "height"})
    divisor = math.gcd(width, height)
    ratio = f"{width // divisor}:{height // divisor}"
    try:
        check_ratio(ratio)
    except PydanticCustomError:
        raise PydanticCustomError("size_ratio", "width:height must be between 21:9 and 9:21, "
                                  "got {ratio}", {"field": "width", "ratio": ratio}) from None
    return ratio


def parse_ratio(text: str) -> tuple[int, int]:
    """(W, H) of an aspect ratio that has passed validation."""
    width, _, height = text.partition(":")
    return int(width), int(height)


def size_for_ratio(ratio: str, low: int, high: int, unit: int,
                   area: int = SHAPE_AREA) -> tuple[int, int]:
    """The width × height closest to `ratio` with about `area` pixels, each side a multiple
    of `unit` within [low, high] (a ratio past high:low is clamped to it)."""
    return size_for_shape(*parse_ratio(ratio), low, high, unit, area)


def size_for_shape(shape_width: float, shape_height: float, low: int, high: int, unit: int,
                   area: int = SHAPE_AREA) -> tuple[int, int]:
    """The width × height of `shape_width`:`shape_height` (a ratio, or an image's size) with
    about `area` pixels, each side a multiple of `unit` within [low, high]. Our clients ask
    for an input photo's own shape this way (static/size.js does the same in the browser)."""
    rw, rh = shape_width, shape_height
    width, height = math.sqrt(area * rw / rh), math.sqrt(area * rh / rw)
    shrink = min(1.0, high / max(width, height))

    def side(length: float) -> int:
        return min(high, max(low, round(length * shrink / unit) * unit))

    return side(width), side(height)
