"""Settings of the local engine: weights, device, warm-up, tier and memory mode, LoRAs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from pipelines.contract import (
    DEFAULT_REFERENCE_TOKEN_BUDGET,
    MIN_REFERENCE_TOKEN_BUDGET,
)
from server.settings.common import BATCH, Size, default_cache_dir, split_commas

#: The names `--models` takes (pipelines/contract.py: MODEL_FAMILIES, and `all`).
MODEL_NAMES = ("kontext-dev", "klein-4b", "klein-9b", "all")


class EngineSettings(BaseModel):
    """The local engine: weights, device, warm-up, tier and memory mode, LoRAs."""

    weights: str | None = Field(
        None,
        description="FLUX.1-Kontext-dev weights: a diffusers-layout folder, a Hugging Face repo "
        "id already in the local cache, or BFL's flux1-kontext-dev.safetensors file.", **BATCH
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["kontext-dev"],
        description="The model families to serve, comma-separated: `kontext-dev` (FLUX.1 "
        "Kontext [dev]), `klein-4b` (FLUX.2 [klein] 4B, Apache-2.0), `klein-9b` (FLUX.2 "
        "[klein] 9B, non-commercial) or `all` (every family whose weights are given; with "
        "--demo, every family on tiny checkpoints).", **BATCH
    )
    model_weights: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Weights of the other families, comma-separated `family=location` "
        "(e.g. `klein-4b=/models/FLUX.2-klein-4B`): a diffusers-layout folder or a Hugging "
        "Face repo id already in the local cache, never downloaded. `kontext-dev=...` "
        "may stand in for --weights.", **BATCH
    )
    base_weights: str | None = Field(
        None,
        description="With a single-file transformer: the folder or cached repo id holding the "
        "other components (text encoders, VAE, tokenizers). Default: "
        "black-forest-labs/FLUX.1-Kontext-dev from the local cache.", **BATCH
    )
    demo: bool = Field(
        False,
        description="Run on a tiny random checkpoint (CPU, no weights needed). Images are noise.",
        **BATCH,
    )
    demo_dir: Path = Field(
        default_factory=lambda: default_cache_dir() / "tiny-checkpoint",
        description="Where --demo writes (once) and loads its tiny checkpoint.", **BATCH
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="Device for the local engine; auto picks cuda when present.", **BATCH
    )
    warmup: bool = Field(True, description="Run one warm-up edit before reporting ready.")
    warmup_steps: int = Field(2, ge=1, le=50, description="Denoising steps of the warm-up edit.")
    reference_token_budget: int = Field(
        DEFAULT_REFERENCE_TOKEN_BUDGET, ge=MIN_REFERENCE_TOKEN_BUDGET,
        description="Most latent tokens all input images of one [dev] job may add together "
        "(canvas and references; a 1024x1024 image is 4096): references are shrunk to fit. "
        "Bounds the cost of multi-reference jobs (docs/multi-reference.md).", **BATCH
    )
    jpeg_quality: int = Field(92, ge=1, le=100, description="Quality of JPEG outputs.", **BATCH)
    tier: Literal["exact", "fp8", "turbo"] = Field(
        "exact",
        description="Engine tier: `exact` (bf16, no lossy lever), `fp8` (torchao float8 "
        "linears; CUDA with compute capability 8.9+ and torchao) or `turbo` (fp8 plus a "
        "TaylorSeer step cache that computes the first 25% of steps in full).", **BATCH
    )
    max_autotune: bool = Field(
        False,
        description="Compile the transformer blocks with inductor's max-autotune (GEMMs "
        "and kernels benchmarked at the 1024² job's sizes): faster steps, a cold start "
        "minutes longer (the compile cache keeps the result). GPU tiers only.", **BATCH
    )
    memory_mode: Literal["full", "24gb", "16gb"] = Field(
        "full",
        description="GPU memory budget: `full` (everything on the GPU), `24gb` (transformer "
        "weights at one byte each, T5 streamed from CPU memory) or `16gb` (transformer and T5 "
        "streamed from CPU memory; exact tier only). CUDA only.", **BATCH
    )
    lora_dir: Path | None = Field(
        None,
        description="Folder of LoRA files: every *.safetensors under it (subfolders too) is "
        "a LoRA named by its relative path without the extension, for `config.loras` of "
        "dev-kontext jobs (GET /v2/loras lists them). Files added later are picked up without "
        "a restart. Unset: jobs with LoRAs are refused.", **BATCH
    )
    lora_cache_bytes: Size = Field(
        4 * 1024**3, ge=0,
        description="Host memory for loaded LoRAs, least recently used evicted first (a "
        "rank-64 LoRA on every layer is ~0.7 GB in bf16).", **BATCH
    )
    lora_max_rank: int = Field(
        64, ge=1, le=1024,
        description="Rank of the LoRA slots: LoRAs up to this rank load. Each of the 3 slots "
        "costs rank × 5.4 M parameters of GPU memory (~0.7 GB at rank 64 in bf16) and a "
        "rank-sized LoRA's work per step, whatever the LoRA's own rank.", **BATCH
    )

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: object) -> object:
        value = split_commas(value)
        if isinstance(value, list):
            unknown = [name for name in value if name not in MODEL_NAMES]
            if unknown:
                raise ValueError(f"unknown model {unknown[0]!r}; use "
                                 f"{', '.join(MODEL_NAMES[:-1])} or all")
            if not value:
                raise ValueError("name at least one model")
        return value

    @field_validator("model_weights", mode="before")
    @classmethod
    def _model_weights(cls, value: object) -> object:
        value = [item for item in split_commas(value) or [] if item] \
            if isinstance(value, (str, list)) else value
        if isinstance(value, list):
            for item in value:
                name, equals, location = item.partition("=")
                if not equals or not location:
                    raise ValueError(f"{item!r} is not `family=location` (e.g. "
                                     "klein-4b=/models/FLUX.2-klein-4B)")
                if name not in MODEL_NAMES[:-1]:
                    raise ValueError(f"unknown model {name!r} in {item!r}; use "
                                     f"{', '.join(MODEL_NAMES[:-1])}")
        return value
