"""Parsed JSON that cannot be represented again: Python's json reads `1e400` as infinity and
`"\\ud800"` as a lone surrogate, neither of which can be written back as JSON (or UTF-8).

Checked once where JSON comes in (request bodies, upstream answers), so no answer that
echoes a value can fail to render.
"""

from __future__ import annotations

import math
import re
from typing import Any

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _item(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _string_problem(text: str) -> str | None:
    found = None if text.isascii() else _SURROGATE.search(text)
    if found is None:
        return None
    return (f"contains a lone surrogate (\\u{ord(found.group()):04x}), which is not a Unicode "
            "character; send text as valid UTF-16 pairs or plain UTF-8")


def unrepresentable(value: Any, path: str = "") -> tuple[str, str] | None:
    """(path, problem) of the first value in `value` that JSON cannot represent, or None.

    The path reads like a validation error's field (`config.loras[0].scale`); a bad key is
    reported at the object holding it.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return path, ("is a number beyond the range of a 64-bit float (about ±1.8e308); "
                      "send a number within the field's range")
    if isinstance(value, str):
        problem = _string_problem(value)
        return (path, problem) if problem else None
    items: Any = ()
    if isinstance(value, dict):
        for key in value:
            problem = _string_problem(key)
            if problem:
                return path, f"a key {problem}"
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    for key, inner in items:
        found = unrepresentable(inner, _item(path, key))
        if found:
            return found
    return None
