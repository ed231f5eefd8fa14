"""Command-line flags derived from the Settings model: one `--flag` per field, its help the
field's description with its default and environment variable, so no setting can be left
out of the CLI. `kontext batch` takes the fields tagged `batch` in Settings."""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any

from pydantic.fields import FieldInfo

from server.settings import Settings


def serve_fields() -> tuple[str, ...]:
    """Every settings field: `kontext serve` takes them all."""
    return tuple(Settings.model_fields)


def batch_fields() -> tuple[str, ...]:
    """The fields `kontext batch` takes (the engine's and the image limits)."""
    return tuple(name for name, info in Settings.model_fields.items()
                 if isinstance(extra := info.json_schema_extra, dict) and extra.get("batch"))


def default_text(info: FieldInfo) -> str:
    """The field's default as a user would type it."""
    value: Any = info.get_default(call_default_factory=True)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def add_setting(parser: argparse.ArgumentParser, name: str) -> None:
    """One --flag for a settings field; not given, the field is left to env or default."""
    info = Settings.model_fields[name]
    flag = "--" + name.replace("_", "-")
    # argparse treats % as a format code in help strings.
    description = (info.description or "").replace("%", "%%")
    help_text = (f"{description} (default: {default_text(info).replace('%', '%%')}) "
                 f"[env: KONTEXT_{name.upper()}]")
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": name}
    annotation = info.annotation
    if annotation is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        kwargs["choices"] = typing.get_args(annotation)
    elif origin not in (typing.Union, types.UnionType) and origin is list:
        # Repeatable, and comma-separated like the environment variable: validated there.
        kwargs["action"] = "append"
    parser.add_argument(flag, **kwargs)


def add_settings(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """A flag for each of `names`."""
    for name in names:
        add_setting(parser, name)


def settings_from_args(args: argparse.Namespace, names: tuple[str, ...] | None = None
                       ) -> Settings:
    """Settings from the environment, overridden by the flags that were given (of `names`,
    by default every field)."""
    names = serve_fields() if names is None else names
    return Settings(**{name: getattr(args, name) for name in names if hasattr(args, name)})
