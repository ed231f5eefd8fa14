"""The one settings object. Read once from CLI flags, KONTEXT_* environment variables and
a settings file (`--config`), in that order of precedence.

Every field's description is its --help text; nothing else in the project reads os.environ.
The fields are grouped by what they configure, one module each; `Settings` is all of them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.settings.common import BATCH, MB, is_loopback, plaintext_refusal, split_commas
from server.settings.edge import EdgeSettings
from server.settings.engine import EngineSettings
from server.settings.files import ConfigFileError, config_path, file_source
from server.settings.results import ResultsSettings
from server.settings.safety import SafetySettings
from server.settings.scale import ScaleSettings
from server.settings.serving import ServingSettings
from server.settings.upstream import UpstreamSettings

__all__ = ["BATCH", "MB", "ConfigFileError", "Settings", "is_loopback", "plaintext_refusal",
           "split_commas"]


# Fields are listed (and --help shows them) from the last base up: the engine first.
class Settings(SafetySettings, ResultsSettings, UpstreamSettings, EdgeSettings, ScaleSettings,
               ServingSettings, EngineSettings, BaseSettings):
    """Server configuration. Environment variable for each field: KONTEXT_<FIELD_NAME>."""

    model_config = SettingsConfigDict(env_prefix="KONTEXT_", extra="forbid")

    config: Path | None = Field(
        None,
        description="Settings file (.toml, .yaml or .json): its keys are these settings' "
        "names with underscores (queue_size = 32), as in a Ray Serve config's `args:`. Flags "
        "win over the environment, which wins over the file.",
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, **_rest):
        # CLI flags (or Ray `args:`) arrive as init kwargs and win over the environment,
        # which wins over the settings file; no .env files.
        path = config_path(init_settings, env_settings)
        if path is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, file_source(settings_cls, path))
