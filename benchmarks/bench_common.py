"""Shared pieces of the engine benchmarks: the full-size random checkpoint, FLOP arithmetic,
step timing and the environment line.

The full-size checkpoint has the real FLUX.1 Kontext [dev] configuration
(kontext_dev_configs.json, copied from the real repository's configs) and RANDOM weights:
the same FLOPs and memory as the real model, never its image quality.
"""

from __future__ import annotations

import json
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pipelines.engine.step_timer import StepTimer as StepClock  # noqa: F401 - the benchmarks' clock

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "kontext_dev_configs.json"
MARKER = "BENCHMARK_RANDOM_CHECKPOINT"

#: performance.md: linear FLOPs per token of one forward, and the attention term.
LINEAR_FLOP_PER_TOKEN = 12.9e9
ATTENTION_BLOCKS, HIDDEN = 57, 3072
TEXT_TOKENS = 512
#: A large bf16 matmul measured on an H100 (performance.md); dense fp8 is about twice.
BF16_PEAK, FP8_PEAK = 790e12, 1580e12


def flops_per_step(image_tokens: int, text_tokens: int = TEXT_TOKENS) -> tuple[float, float]:
    """(linear, attention) FLOPs of one transformer forward; 112 + 53 TFLOP at 1024²."""
    tokens = image_tokens + text_tokens
    return LINEAR_FLOP_PER_TOKEN * tokens, ATTENTION_BLOCKS * 4 * tokens**2 * HIDDEN


def floor_seconds(image_tokens: int, fp8_linears: bool) -> float:
    """The hardware floor of one step: linears at fp8 or bf16 peak, attention at bf16 peak."""
    linear, attention = flops_per_step(image_tokens)
    return linear / (FP8_PEAK if fp8_linears else BF16_PEAK) + attention / BF16_PEAK


def build_random_pipeline(device: str = "cuda", seed: int = 0):
    """The full-size Kontext [dev] pipeline with random bf16 weights, built on `device` from
    `seed` (the same seed gives the same weights on the same device), in eval() mode.

    Built directly in bf16 on the device (random init of 16.9 B parameters on CPU takes
    long), with the tiny checkpoint's in-code tokenizers: they change no FLOPs, T5 still pads
    to 512 tokens.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from pipelines.weights.tiny import _clip_tokenizer, _t5_tokenizer

    configs = json.loads(CONFIGS.read_text())

    def plain(name: str) -> dict:
        return {k: v for k, v in configs[name].items() if not k.startswith("_")}

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(**plain("transformer"))
            vae = AutoencoderKL(**plain("vae"))
            text_encoder = CLIPTextModel(CLIPTextConfig(**plain("text_encoder")))
            text_encoder_2 = T5EncoderModel(T5Config(**plain("text_encoder_2")))
    finally:
        torch.set_default_dtype(previous)
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**plain("scheduler")), vae=vae,
        text_encoder=text_encoder, tokenizer=_clip_tokenizer(), text_encoder_2=text_encoder_2,
        tokenizer_2=_t5_tokenizer(), transformer=transformer,
    )
    for component in (transformer, vae, text_encoder, text_encoder_2):
        component.eval()
    return pipe


def build_random_checkpoint(directory: Path, device: str = "cuda") -> Path:
    """Write the full-size pipeline with random bf16 weights (diffusers layout) to disk."""
    import torch

    pipe = build_random_pipeline(device)
    directory.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(directory, safe_serialization=True)
    (directory / MARKER).write_text("Random weights, real FLUX.1 Kontext [dev] shapes.\n")
    del pipe
    if device == "cuda":
        torch.cuda.empty_cache()
    return directory


def ensure_checkpoint(directory: Path, tiny: bool, device: str) -> Path:
    """The benchmark checkpoint: built once, then reused from local disk."""
    if tiny:
        from pipelines.weights.tiny import is_tiny_checkpoint, write_tiny_checkpoint

        return directory if is_tiny_checkpoint(directory) else write_tiny_checkpoint(directory)
    if (directory / MARKER).is_file():
        return directory
    print(f"building the full-size random checkpoint in {directory} (once)", flush=True)
    return build_random_checkpoint(directory, device)


def synchronize(device: str) -> None:
    """Wait for the device so host timings cover the work."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def environment(device: str) -> str:
    """GPU (or CPU), driver and library versions, one line."""
    import torch

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    where = f"{platform.machine()} CPU"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        driver = _nvidia_driver()
        where = (f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA "
                 f"{torch.version.cuda}, driver {driver}")
    return (f"{where}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"diffusers {ver('diffusers')}, torchao {ver('torchao')}")


def _nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"
