"""What the settings groups share: units, the batch tag, and the parsing rules of values."""

from __future__ import annotations

from pathlib import Path

from pydantic import ByteSize

MB = 1024 * 1024
#: A size in bytes, as a whole number or with a unit: `12MiB`, `64 MiB`, `1.5GB` (KiB, MiB,
#: GiB are powers of 1024; kB, MB, GB powers of 1000), parsed by pydantic's ByteSize.
Size = ByteSize
_BINARY_UNITS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
_DECIMAL_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))
#: Marks the fields `kontext batch` takes as flags too (engine and image settings).
BATCH = {"json_schema_extra": {"batch": True}}


def format_size(size: int) -> str:
    """A byte count as the largest unit that holds it exactly (12582912 → `12MiB`,
    50000000 → `50MB`), or the plain number: what Size reads back to the same value."""
    for unit, factor in _BINARY_UNITS + _DECIMAL_UNITS:
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def default_cache_dir() -> Path:
    """Where the demo checkpoint is written: $XDG_CACHE_HOME/kontext or ~/.cache/kontext."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kontext"


def split_commas(value: object) -> object:
    """A comma-separated string, or a list of them, as one list of stripped items."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [part.strip() for item in value for part in item.split(",")]
    return value


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 in brackets or not) is this machine only."""
    import ipaddress

    bare = host.strip("[]").lower().rstrip(".")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def plaintext_refusal(url: str, allow_plaintext: bool) -> str | None:
    """Why an upstream base URL may not carry a credential, or None when it may."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.scheme == "https" or allow_plaintext or is_loopback(parts.hostname):
        return None
    return (f"{url} is plain http to {parts.hostname}: the upstream credential would cross the "
            "network unencrypted; use https, or pass --upstream-allow-plaintext")
