"""What the settings groups share: units, the batch tag, and the parsing rules of values."""

from __future__ import annotations

from pathlib import Path

MB = 1024 * 1024
#: Marks the fields `kontext batch` takes as flags too (engine and image settings).
BATCH = {"json_schema_extra": {"batch": True}}


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
