"""Command-line flags derived from the Settings model: one `--flag` per field, its help the
field's description with its default and environment variable, so no setting can be left
out of the CLI. `kontext batch` takes the fields tagged `batch` in Settings."""

from __future__ import annotations

import argparse
import re
import types
import typing
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from server.settings import ConfigFileError, Settings
from server.settings.common import Size, format_size
from server.settings.files import unknown_key

#: What building Settings raises for settings that cannot be used (settings_problem says why).
SETTINGS_ERRORS = (ValidationError, ConfigFileError)


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
    if info.annotation is Size and isinstance(value, int):
        return format_size(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def add_setting(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str) -> None:
    """One --flag for a settings field; not given, the field is left to env or default."""
    info = Settings.model_fields[name]
    flag = "--" + name.replace("_", "-")
    # argparse treats % as a format code in help strings.
    description = (info.description or "").replace("%", "%%")
    help_text = (f"{description} (default: {default_text(info).replace('%', '%%')}) "
                 f"[env: KONTEXT_{name.upper()}]")
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": name}
    annotation = info.annotation
    if annotation is Size:
        kwargs["metavar"] = "SIZE"
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
    """A flag for each of `names`, in --help groups by what they configure."""
    from server.cli.help_groups import grouped

    for title, description, fields in grouped(names):
        group = parser.add_argument_group(title, description)
        for name in fields:
            add_setting(group, name)


def settings_from_args(args: argparse.Namespace, names: tuple[str, ...] | None = None
                       ) -> Settings:
    """Settings from the environment, overridden by the flags that were given (of `names`,
    by default every field)."""
    names = serve_fields() if names is None else names
    return Settings(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def setting_name(name: str) -> str:
    """How a user sets a field: `--queue-size (KONTEXT_QUEUE_SIZE)`."""
    return f"--{name.replace('_', '-')} (KONTEXT_{name.upper()})"


#: Fields whose value is never echoed in an error (it may be a secret).
SECRET_FIELDS = ("tokens",)


def _size_bound(error: dict[str, Any], name: str | None) -> str | None:
    """A size setting's bound in the unit --help shows (`must be at least 1KiB`), or None."""
    words = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most")}
    if error["type"] not in words or name not in Settings.model_fields \
            or Settings.model_fields[name].annotation is not Size:
        return None
    key, text = words[error["type"]]
    return f"must be {text} {format_size(error['ctx'][key])}"


def _setting_rule(error: dict[str, Any], name: str | None) -> str:
    """One settings error's rule in our words (values from flags and variables are text)."""
    from server.wire.base import error_rule

    kind, value = error["type"], error.get("input")
    got = "" if name in SECRET_FIELDS else f", got {value!r}"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    bound = _size_bound(error, name)
    if bound:
        return f"{bound}{got}"
    rules = {"int_parsing": f"must be a whole number{got}",
             "float_parsing": f"must be a number{got}",
             "bool_parsing": f"must be true or false (also on/off, yes/no, 1/0){got}",
             "path_not_file": f"no such file{got}",
             "path_not_directory": f"no such folder{got}",
             "list_type": f"must be a comma-separated list{got}",
             "byte_size": f"must be a size: bytes, or a number with a unit (12MiB, 64 MiB, "
                          f"1.5GB){got}",
             "byte_size_unit": f"must be a size with a known unit: B, KiB, MiB, GiB, TiB "
                               f"(powers of 1024) or kB, MB, GB, TB{got}"}
    if kind in rules:
        return rules[kind]
    return error_rule({**error, "input": "…"} if name in SECRET_FIELDS else error)


def settings_problem(exc: Exception, config: object = None) -> str:
    """What is wrong with the settings: a ValidationError in our words, or a settings file
    that cannot be read (ConfigFileError, already one line)."""
    return settings_error(exc, config) if isinstance(exc, ValidationError) else str(exc)


def settings_error(exc: ValidationError, config: object = None) -> str:
    """Every error of a Settings validation, on one line, in our words: each names the flag
    and its environment variable, then the rule (never pydantic's own text or links).
    `config`: the settings file, named with the keys it holds that no setting has."""
    parts = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else None
        if error["type"] == "extra_forbidden" and name is not None:
            parts.append(unknown_key(name, Settings.model_fields, config))
            continue
        rule = _setting_rule(error, name)
        if name in Settings.model_fields:
            parts.append(f"{setting_name(name)}: {rule}")
        else:  # a rule across fields names them in its text: the flags and variables instead
            # (names with an underscore only: `host` or `port` may be plain words there)
            for field in sorted(Settings.model_fields, key=len, reverse=True):
                if "_" in field:
                    rule = re.sub(rf"\b{field}\b", setting_name(field), rule)
            parts.append(rule)
    return "; ".join(parts)
