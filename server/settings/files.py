"""The settings file (`--config FILE`, KONTEXT_CONFIG): TOML, YAML or JSON, read by
pydantic-settings' own file sources. Its keys are the settings' field names (the flags with
underscores, the environment variables without `KONTEXT_` and in lower case, the keys of a
Ray Serve config's `args:`), at the top level of the file.

Precedence, highest first: flags (and Ray `args:`), environment, this file, defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic_settings import (
    InitSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

#: The settings field that names the file (so `--config` and KONTEXT_CONFIG come for free).
CONFIG_FIELD = "config"
FORMATS = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON"}


class ConfigFileError(ValueError):
    """The settings file cannot be used: missing, unreadable, not parsed, or not a table."""


def config_path(init: PydanticBaseSettingsSource,
                env: PydanticBaseSettingsSource) -> Path | None:
    """The file the flags (first) or the environment name, or None."""
    for source in (init, env):
        value = source().get(CONFIG_FIELD)
        if value not in (None, ""):
            return Path(value)
    return None


def file_source(settings_cls: type[BaseSettings], path: Path) -> InitSettingsSource:
    """The source of the settings in `path`; ConfigFileError saying why it cannot be read."""
    kind = FORMATS.get(path.suffix.lower())
    where = f"--config {path}"
    if kind is None:
        raise ConfigFileError(f"{where}: the file name must end in .toml, .yaml, .yml or .json")
    if not path.is_file():
        raise ConfigFileError(f"{where}: no such file")
    try:
        source = _SOURCES[kind](settings_cls, path)
    except OSError as exc:
        raise ConfigFileError(f"{where}: cannot read it: {_first_line(exc)}") from exc
    except _parse_errors() as exc:
        raise ConfigFileError(f"{where}: not valid {kind}: {_first_line(exc)}") from exc
    except (TypeError, ValueError) as exc:  # a list or a scalar at the top of the file
        raise ConfigFileError(f"{where}: the file must hold a table of settings "
                              "(key = value)") from exc
    if not isinstance(source.init_kwargs, dict):
        raise ConfigFileError(f"{where}: the file must hold a table of settings (key = value)")
    if CONFIG_FIELD in source.init_kwargs:
        raise ConfigFileError(f"{where}: a settings file cannot name another ({CONFIG_FIELD!r})")
    return source


def unknown_key(name: str, known: Iterable[str], config: object = None) -> str:
    """A key no setting has (in the settings file, or Ray's `args:`), with the nearest of
    the `known` names."""
    import difflib

    where = f"--config {config}: " if config else ""
    near = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"{where}unknown setting {name!r}{hint}"


_SOURCES: dict[str, Callable[[type[BaseSettings], Path], InitSettingsSource]] = {
    "TOML": lambda cls, path: TomlConfigSettingsSource(cls, toml_file=path),
    "YAML": lambda cls, path: YamlConfigSettingsSource(cls, yaml_file=path),
    "JSON": lambda cls, path: JsonConfigSettingsSource(cls, json_file=path),
}


def _parse_errors() -> tuple[type[Exception], ...]:
    """What the three parsers raise for text they cannot parse (yaml loaded only here)."""
    import json
    import tomllib

    import yaml

    return (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError)


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
