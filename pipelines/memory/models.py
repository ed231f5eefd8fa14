"""Memory of several model families on one device: klein's plan (its components built from
their configs on the meta device, as Kontext's in plan.py) and the check that every family
served on a device fits it together.

A device holds every served family's resident weights at once; only one job runs at a time,
so the worst single phase of any one family comes on top.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from pipelines.errors import InvalidInput
from pipelines.levers.plan import EnginePlan
from pipelines.memory.plan import (
    GIB,
    MODE_CAPS,
    RESERVED,
    SIDE,
    TEXT_TOKENS,
    MemoryPlan,
    device_total_bytes,
    fp8_linear_bytes,
    module_bytes,
)
from pipelines.memory.trace import peak_activation_bytes

KLEIN_COMPONENTS = ("transformer", "text_encoder", "vae")


def read_klein_configs(location: str) -> dict | None:
    """The klein component configs of a diffusers-layout folder (None when unreadable)."""
    configs = {}
    for name in KLEIN_COMPONENTS:
        try:
            configs[name] = json.loads((Path(location) / name / "config.json").read_text())
        except (OSError, ValueError):
            return None
    return configs


def _meta_parts(configs_json: str) -> dict:
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    configs = json.loads(configs_json)

    def plain(name: str) -> dict:
        return {k: v for k, v in configs[name].items() if not k.startswith("_")}

    with torch.device("meta"):
        return {"transformer": Flux2Transformer2DModel(**plain("transformer")),
                "text_encoder": Qwen3ForCausalLM(Qwen3Config(**plain("text_encoder"))),
                "vae": AutoencoderKLFlux2(**plain("vae"))}


@functools.lru_cache(maxsize=2)
def _klein_parts(configs_json: str) -> dict:
    import torch

    return {name: part.to(torch.bfloat16).eval()
            for name, part in _meta_parts(configs_json).items()}


@functools.lru_cache(maxsize=2)
def _klein_activations(configs_json: str) -> tuple[tuple[str, int], ...]:
    """Peak activations of each phase of a 1024² edit with one 1 MP reference."""
    import torch

    parts = _klein_parts(configs_json)
    transformer, vae, text = parts["transformer"], parts["vae"], parts["text_encoder"]
    tokens = 2 * (SIDE // 16) ** 2
    config = transformer.config
    with torch.device("meta"):
        bf16 = {"dtype": torch.bfloat16}
        latents = torch.randn(1, tokens, config.in_channels, **bf16)
        prompt = torch.randn(1, TEXT_TOKENS, config.joint_attention_dim, **bf16)
        ids, text_ids = torch.zeros(1, tokens, 4), torch.zeros(1, TEXT_TOKENS, 4)
        image = torch.randn(1, 3, SIDE, SIDE, **bf16)
        packed = torch.randn(1, vae.config.latent_channels, SIDE // 8, SIDE // 8, **bf16)
        input_ids = torch.zeros(1, TEXT_TOKENS, dtype=torch.long)
        # A prepared 4D mask: transformers then skips its mask checks, which read values
        # (impossible on meta tensors); the pipeline's 2D mask makes the same 4D one.
        mask = torch.zeros(1, 1, TEXT_TOKENS, TEXT_TOKENS, **bf16)
        one = torch.ones(1)
    forward = functools.partial(transformer, hidden_states=latents,
                                encoder_hidden_states=prompt, timestep=one, img_ids=ids,
                                txt_ids=text_ids, guidance=None, return_dict=False)
    return (("text", peak_activation_bytes(lambda: text(
                input_ids, attention_mask=mask, output_hidden_states=True, use_cache=False))),
            ("encode", peak_activation_bytes(lambda: vae.encode(image))),
            ("denoise", peak_activation_bytes(forward)),
            ("decode", peak_activation_bytes(lambda: vae.decode(packed))))


def klein_memory(location: str, plan: EnginePlan, device_bytes: int | None = None
                 ) -> MemoryPlan | None:
    """klein's memory plan on CUDA (every component resident; the fp8 tier's linears at one
    byte), or None off CUDA or without configs in a local folder."""
    if plan.device != "cuda":
        return None
    configs = read_klein_configs(location)
    if configs is None:
        return None
    configs_json = json.dumps(configs, sort_keys=True)
    parts = _klein_parts(configs_json)
    size = fp8_linear_bytes if plan.fp8_linears else module_bytes
    resident = {"transformer": size(parts["transformer"]),
                "text_encoder": module_bytes(parts["text_encoder"]),
                "vae": module_bytes(parts["vae"])}
    device_bytes = device_bytes or device_total_bytes()
    return MemoryPlan(plan.memory_mode, plan.tier, resident, {},
                      dict(_klein_activations(configs_json)),
                      min(MODE_CAPS.get(plan.memory_mode, device_bytes), device_bytes))


def _worst_phase(memory: MemoryPlan) -> int:
    return memory.peak - sum(memory.resident.values())


def check_model_set(plans: dict[str, MemoryPlan], device_bytes: int) -> str:
    """Refuse (InvalidInput, every number in GiB) a set of families whose resident weights
    together, plus the worst phase of any one of them, do not fit the device; return the
    one-line summary."""
    def gib(n: int) -> str:
        return f"{n / GIB:.1f}"

    resident = {name: sum(memory.resident.values()) for name, memory in plans.items()}
    worst_name, worst = max(((name, _worst_phase(memory)) for name, memory in plans.items()),
                            key=lambda item: item[1])
    peak = sum(resident.values()) + worst
    margin = device_bytes - RESERVED - peak
    weights = " + ".join(f"{name} {gib(n)}" for name, n in resident.items())
    line = (f"models on one device: peak {gib(peak)} GiB = resident weights ({weights}) + "
            f"the worst phase ({worst_name}, {gib(worst)}); device {gib(device_bytes)} GiB "
            f"less {gib(RESERVED)} reserved → margin {gib(margin)} GiB")
    if margin < 0:
        raise InvalidInput(f"--models {','.join(plans)} cannot share this device: {line}; "
                           "serve fewer models (--models), a lighter tier (--tier fp8) or "
                           "use a GPU with more memory")
    return line
