"""Find FLUX.1 Kontext [dev] weights on local disk and load them, never downloading.

Three sources are accepted:
  * a folder in the diffusers layout (has model_index.json);
  * a Hugging Face repo id already in the local cache (loaded with local_files_only);
  * BFL's single-file transformer (`flux1-kontext-dev.safetensors`) plus a diffusers-layout
    folder or cached repo for the other components (`base`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.errors import WeightsError

DEFAULT_REPO = "black-forest-labs/FLUX.1-Kontext-dev"
HELP_POINTER = "See weights/README.md for how to obtain and place the weights, or run with --demo."

SourceKind = Literal["folder", "repo", "single_file"]


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights come from; `base` only for a single-file transformer."""

    kind: SourceKind
    location: str
    base: str | None = None

    def describe(self) -> str:
        """A short human description for logs and /readyz."""
        if self.kind == "single_file":
            return f"{Path(self.location).name} + components from {self.base}"
        return self.location


def resolve_weights(location: str | None, base: str | None = None) -> WeightsSource:
    """Decide what kind of source `location` is, or raise WeightsError saying what is wrong."""
    if not location:
        raise WeightsError(f"No weights given (--weights / KONTEXT_WEIGHTS). {HELP_POINTER}")
    path = Path(location).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise WeightsError(
                f"{path} is a folder but has no model_index.json: not a diffusers-layout "
                f"checkpoint. {HELP_POINTER}"
            )
        return WeightsSource("folder", str(path))
    if path.is_file():
        if path.suffix != ".safetensors":
            raise WeightsError(f"{path} is a file but not .safetensors. {HELP_POINTER}")
        return WeightsSource("single_file", str(path), base or DEFAULT_REPO)
    looks_like_repo = location.count("/") == 1 and not location.startswith((".", "/", "~"))
    if looks_like_repo:
        return WeightsSource("repo", location)
    raise WeightsError(f"{location} does not exist. {HELP_POINTER}")


def load_pipeline(source: WeightsSource, torch_dtype):
    """Load a FluxKontextPipeline from `source` offline, or raise WeightsError."""
    from diffusers import FluxKontextPipeline, FluxTransformer2DModel

    try:
        if source.kind == "single_file":
            transformer = FluxTransformer2DModel.from_single_file(
                source.location, config=source.base, subfolder="transformer",
                dtype=torch_dtype, local_files_only=True,
            )
            pipe = FluxKontextPipeline.from_pretrained(
                source.base, transformer=transformer, dtype=torch_dtype,
                local_files_only=True,
            )
        else:
            pipe = FluxKontextPipeline.from_pretrained(
                source.location, dtype=torch_dtype, local_files_only=True
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        # `kontext weights check` passed (engine_build.py runs it first): what failed here
        # is past what headers and configs show, so the library's words are the best guide.
        raise WeightsError(f"Could not load weights from {source.describe()}: {exc}. "
                           f"{HELP_POINTER}") from exc
    for component in pipe.components.values():
        # Eval mode: T5's dropout would otherwise make seeded runs differ.
        if hasattr(component, "eval"):
            component.eval()
    return pipe
