"""The one settings object. Read once from KONTEXT_* environment variables and CLI flags.

Every field's description is its --help text; nothing else in the project reads os.environ.
The fields are grouped by what they configure, one module each; `Settings` is all of them.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from server.settings.common import BATCH, MB, is_loopback, plaintext_refusal, split_commas
from server.settings.edge import EdgeSettings
from server.settings.engine import EngineSettings
from server.settings.results import ResultsSettings
from server.settings.safety import SafetySettings
from server.settings.scale import ScaleSettings
from server.settings.serving import ServingSettings
from server.settings.upstream import UpstreamSettings

__all__ = ["BATCH", "MB", "Settings", "is_loopback", "plaintext_refusal", "split_commas"]


# Fields are listed (and --help shows them) from the last base up: the engine first.
class Settings(SafetySettings, ResultsSettings, UpstreamSettings, EdgeSettings, ScaleSettings,
               ServingSettings, EngineSettings, BaseSettings):
    """Server configuration. Environment variable for each field: KONTEXT_<FIELD_NAME>."""

    model_config = SettingsConfigDict(env_prefix="KONTEXT_", extra="forbid")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, **_rest):
        # CLI flags arrive as init kwargs and win over the environment; no .env files.
        return (init_settings, env_settings)
