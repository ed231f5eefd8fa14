"""The one settings object. Read once from KONTEXT_* environment variables and CLI flags.

Every field's description is its --help text; nothing else in the project reads os.environ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MB = 1024 * 1024


def default_cache_dir() -> Path:
    """Where the demo checkpoint is written: $XDG_CACHE_HOME/kontext or ~/.cache/kontext."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kontext"


class Settings(BaseSettings):
    """Server configuration. Environment variable for each field: KONTEXT_<FIELD_NAME>."""

    model_config = SettingsConfigDict(env_prefix="KONTEXT_", extra="forbid")

    weights: str | None = Field(
        None,
        description="FLUX.1-Kontext-dev weights: a diffusers-layout folder, a Hugging Face repo "
        "id already in the local cache, or BFL's flux1-kontext-dev.safetensors file.",
    )
    base_weights: str | None = Field(
        None,
        description="With a single-file transformer: the folder or cached repo id holding the "
        "other components (text encoders, VAE, tokenizers). Default: "
        "black-forest-labs/FLUX.1-Kontext-dev from the local cache.",
    )
    demo: bool = Field(
        False,
        description="Run on a tiny random checkpoint (CPU, no weights needed). Images are noise.",
    )
    demo_dir: Path = Field(
        default_factory=lambda: default_cache_dir() / "tiny-checkpoint",
        description="Where --demo writes (once) and loads its tiny checkpoint.",
    )
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 picks a free one).")
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="Device for the local engine; auto picks cuda when present."
    )
    queue_size: int = Field(
        16, ge=1, description="Jobs that may wait for the GPU; past this, 429 with Retry-After."
    )
    tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens accepted (comma-separated in the environment). Empty: no "
        "authentication.",
    )
    warmup: bool = Field(True, description="Run one warm-up edit before reporting ready.")
    warmup_steps: int = Field(2, ge=1, le=50, description="Denoising steps of the warm-up edit.")
    max_body_bytes: int = Field(
        12 * MB, ge=1024, description="Largest request body accepted; larger is 413."
    )
    max_input_bytes: int = Field(
        10 * MB, ge=1024, description="Largest input image file accepted; larger is 400."
    )
    max_input_parts: int = Field(
        4, ge=1, description="Most `input` parts accepted in one multipart request."
    )
    jpeg_quality: int = Field(92, ge=1, le=100, description="Quality of JPEG outputs.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    @field_validator("tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, **_rest):
        # CLI flags arrive as init kwargs and win over the environment; no .env files.
        return (init_settings, env_settings)
