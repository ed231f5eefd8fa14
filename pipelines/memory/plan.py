"""GPU memory each memory mode needs, planned on the meta device from the real component
configs, and the startup check that refuses a mode that cannot fit (with the numbers).

Weights are counted per component and dtype after the plan's own weight levers, applied on
meta by the same functions the engine uses (fused QKV with the unfused projections dropped,
fp8 storage by diffusers' layerwise casting); torchao float8 linears are counted as one
byte per weight plus one fp32 scale per row. Activations are traced on meta
(pipelines/memory/trace.py) for a 1024² edit with a 1 MP reference: text encoders, the
reference's VAE encode, one transformer forward (8,192 image + 512 text tokens), the decode.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import InvalidInput
from pipelines.levers.plan import EnginePlan
from pipelines.memory.trace import peak_activation_bytes

log = logging.getLogger(__name__)

GIB = 2**30
#: The memory modes' caps; "full" is capped by the GPU alone.
MODE_CAPS = {"24gb": 24 * GIB, "16gb": 16 * GIB}
#: Not available to tensors: the CUDA context, cuBLAS/cuDNN workspaces, allocator slack.
RESERVED = 1 * GIB
COMPONENTS = ("transformer", "text_encoder_2", "text_encoder", "vae")
#: Which component runs in which phase of an edit (a streamed one is resident only then).
PHASES = {"text": "text_encoder_2", "encode": "vae", "denoise": "transformer", "decode": "vae"}
SIDE, TEXT_TOKENS = 1024, 512


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes one engine holds on the GPU at a 1024² edit with a 1 MP reference."""

    memory_mode: str
    tier: str
    resident: dict[str, int]
    streamed: dict[str, int]
    activations: dict[str, int]
    cap: int
    #: Held by recorded CUDA graphs (pipelines/levers/cuda_graphs.py): one transformer
    #: forward's activations per graph the plan allows, an upper bound (they share a pool).
    graphs: int = 0

    @property
    def peak(self) -> int:
        """Resident weights and graph pools plus the worst phase's activations and streamed
        weights."""
        return sum(self.resident.values()) + self.graphs + max(
            self.activations[phase] + self.streamed.get(component, 0)
            for phase, component in PHASES.items())

    @property
    def margin(self) -> int:
        """Bytes left under the cap after RESERVED (negative: it cannot fit)."""
        return self.cap - RESERVED - self.peak

    def describe(self) -> str:
        """One line with every number, in GiB."""
        def gib(n: int) -> str:
            return f"{n / GIB:.1f}"

        weights = ", ".join(f"{k} {gib(v)}" for k, v in self.resident.items() if v)
        streamed = ", ".join(f"{k} {gib(v)}" for k, v in self.streamed.items())
        acts = ", ".join(f"{k} {gib(v)}" for k, v in self.activations.items())
        graphs = f" + CUDA graphs {gib(self.graphs)}" if self.graphs else ""
        return (f"{self.tier}@{self.memory_mode}: peak {gib(self.peak)} GiB = resident "
                f"weights ({weights}){graphs} + worst phase (activations: {acts}; streamed: "
                f"{streamed or 'none'}); cap {gib(self.cap)} GiB less {gib(RESERVED)} "
                f"reserved → margin {gib(self.margin)} GiB")


def module_bytes(module) -> int:
    """Bytes of a module's parameters and buffers as stored."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def fp8_linear_bytes(module) -> int:
    """Bytes after the fp8 tiers' torchao float8 per-row quantisation (the linears
    pipelines/levers/quantize.fp8_eligible picks): one byte per weight and an fp32 scale per
    row; the linears kept in bf16 stay as they are."""
    from pipelines.levers.quantize import fp8_eligible

    saved = 0
    for name, linear in module.named_modules():
        if fp8_eligible(name, linear):
            weight = linear.weight
            saved += weight.numel() * (weight.element_size() - 1) - linear.out_features * 4
    return module_bytes(module) - saved


def build_meta(configs: dict, names: tuple[str, ...] = COMPONENTS) -> dict:
    """The components `names` on the meta device in bf16, from their configs."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    def plain(name: str) -> dict:
        return {k: v for k, v in configs[name].items() if not k.startswith("_")}

    makers = {
        "transformer": lambda: FluxTransformer2DModel(**plain("transformer")),
        "text_encoder_2": lambda: T5EncoderModel(T5Config(**plain("text_encoder_2"))),
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**plain("text_encoder"))),
        "vae": lambda: AutoencoderKL(**plain("vae")),
    }
    with torch.device("meta"):
        return {name: makers[name]().to(torch.bfloat16).eval() for name in names}


@functools.lru_cache(maxsize=2)
def _unchanged_parts(configs_json: str) -> dict:
    """Components no lever changes, built once per configs (levers rebuild the transformer)."""
    return build_meta(json.loads(configs_json))


@functools.lru_cache(maxsize=2)
def _activations(configs_json: str) -> tuple[tuple[str, int], ...]:
    import torch

    parts = _unchanged_parts(configs_json)
    transformer, vae = parts["transformer"], parts["vae"]
    tokens = 2 * (SIDE // 16) ** 2  # output + the 1 MP reference
    config = transformer.config
    with torch.device("meta"):
        bf16 = {"dtype": torch.bfloat16}
        latents = torch.randn(1, tokens, config.in_channels, **bf16)
        text = torch.randn(1, TEXT_TOKENS, config.joint_attention_dim, **bf16)
        ids, text_ids = torch.zeros(tokens, 3), torch.zeros(TEXT_TOKENS, 3)
        pooled = torch.randn(1, config.pooled_projection_dim, **bf16)
        image = torch.randn(1, 3, SIDE, SIDE, **bf16)
        packed = torch.randn(1, 16, SIDE // 8, SIDE // 8, **bf16)
        t5_ids, clip_ids = (torch.zeros(1, n, dtype=torch.long) for n in (TEXT_TOKENS, 77))
        one = torch.ones(1)
    forward = functools.partial(
        transformer, hidden_states=latents, encoder_hidden_states=text,
        pooled_projections=pooled, timestep=one, img_ids=ids, txt_ids=text_ids,
        guidance=one, return_dict=False)
    text_peak = max(peak_activation_bytes(lambda: parts["text_encoder_2"](t5_ids)),
                    peak_activation_bytes(lambda: parts["text_encoder"](clip_ids)))
    return (("text", text_peak),
            ("encode", peak_activation_bytes(lambda: vae.encode(image))),
            ("denoise", peak_activation_bytes(forward)),
            ("decode", peak_activation_bytes(lambda: vae.decode(packed))))


def _transformer_bytes(transformer, plan: EnginePlan) -> tuple[int, int]:
    """(resident, streamed) bytes of the transformer under the plan's levers (on meta)."""
    import torch

    from pipelines.levers.quantize import fuse_qkv

    if plan.fuse_qkv:
        fuse_qkv(transformer)
    if plan.fp8_weight_storage:
        transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn,
                                             compute_dtype=torch.bfloat16)
    size = fp8_linear_bytes if plan.fp8_linears else module_bytes
    if plan.transformer_offload == "none":
        return size(transformer), 0
    blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
    block_bytes = [size(block) for block in blocks]
    # One block computing while the next is prefetched on the side stream.
    return size(transformer) - sum(block_bytes), 2 * max(block_bytes)


def plan_memory(configs: dict, plan: EnginePlan, device_bytes: int) -> MemoryPlan:
    """The memory plan of `plan` for the components in `configs` on a GPU of device_bytes."""
    # Keyed on the four components' configs only: the same model from any source hits.
    configs_json = json.dumps({name: configs[name] for name in COMPONENTS}, sort_keys=True)
    parts = dict(_unchanged_parts(configs_json))
    if plan.fuse_qkv or plan.fp8_weight_storage:  # these levers change the module: a copy
        parts["transformer"] = build_meta(configs, ("transformer",))["transformer"]
    resident: dict[str, int] = {}
    streamed: dict[str, int] = {}
    resident["transformer"], streamed_transformer = _transformer_bytes(parts["transformer"],
                                                                       plan)
    if streamed_transformer:
        streamed["transformer"] = streamed_transformer
    for name in ("text_encoder_2", "text_encoder", "vae"):
        resident[name] = module_bytes(parts[name])
    if plan.text_encoder_offload != "none":
        leaves = [module_bytes(m) for m in parts["text_encoder_2"].modules()
                  if not list(m.children())]
        resident["text_encoder_2"], streamed["text_encoder_2"] = 0, 2 * max(leaves)
    activations = dict(_activations(configs_json))
    cap = min(MODE_CAPS.get(plan.memory_mode, device_bytes), device_bytes)
    graphs = plan.cuda_graphs.max_graphs * activations["denoise"] if plan.cuda_graphs else 0
    return MemoryPlan(plan.memory_mode, plan.tier, resident, streamed, activations, cap,
                      graphs)


def read_configs(location: str) -> dict | None:
    """The component configs of a diffusers-layout folder (None when unreadable)."""
    configs = {}
    for name in COMPONENTS:
        path = Path(location) / name / "config.json"
        try:
            configs[name] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
    return configs


def device_total_bytes() -> int:
    """The current CUDA device's memory."""
    import torch

    return torch.cuda.get_device_properties(0).total_memory


def kontext_memory(source, plan: EnginePlan, device_bytes: int | None = None
                   ) -> MemoryPlan | None:
    """The Kontext memory plan on CUDA, or None when not on CUDA or the configs are not in
    a local folder (loading then reports any problem with the weights)."""
    if plan.device != "cuda":
        return None
    folder = source.base if source.kind == "single_file" else source.location
    configs = read_configs(folder) if folder else None
    if configs is None:
        log.info("memory plan skipped: no component configs in a local folder at %s", folder)
        return None
    return plan_memory(configs, plan, device_bytes or device_total_bytes())


def check_memory_plan(source, plan: EnginePlan, device_bytes: int | None = None) -> str | None:
    """Refuse (InvalidInput, with the numbers) a CUDA plan that cannot fit its cap or the
    GPU; return the plan's one-line summary, or None when not on CUDA or the configs are
    not in a local folder (loading then reports any problem with the weights)."""
    memory = kontext_memory(source, plan, device_bytes)
    if memory is None:
        return None
    if memory.margin < 0:
        raise InvalidInput(f"--memory-mode {plan.memory_mode} cannot fit --tier {plan.tier} "
                           f"on this GPU: {memory.describe()}")
    log.info("memory plan: %s", memory.describe())
    return memory.describe()


def settle_device_memory(device: str) -> dict[str, str]:
    """Free cached blocks, reset the peaks, and report what is allocated and reserved."""
    if device != "cuda":
        return {}
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return {"gpu_allocated_gib": f"{torch.cuda.memory_allocated() / GIB:.2f}",
            "gpu_reserved_gib": f"{torch.cuda.memory_reserved() / GIB:.2f}"}
