"""Tiny LoRA files for the engine tests, made here from the tiny transformer with PEFT (never
downloaded), saved in the layouts people download: diffusers/PEFT, kohya, ComfyUI, BFL,
fal's Kontext trainer, XLabs; plus files that must be refused.

The kohya/ComfyUI/BFL files hold the same LoRA as the diffusers file, written the way those
tools write it (q, k and v as one fused qkv matrix; kohya's alpha), so each must reproduce
the diffusers file's effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RANK, ALPHA = 4, 8  # PEFT scaling alpha / rank = 2, so the alpha handling is exercised
#: Double-block (index 0) modules → BFL names; q/k/v are fused into one qkv matrix there.
DOUBLE = {"attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj",
          "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
          "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2",
          "norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin"}
QKV = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
       "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
#: Single-block modules. diffusers' kohya converter splits `linear1` with the full-size
#: widths, so the tiny LoRAs leave the single blocks' q/k/v/mlp alone.
SINGLE = {"proj_out": "linear2", "norm.linear": "modulation.lin"}
TARGETS = (r"(transformer_blocks\.0\.(attn\.(to_[qkv]|to_out\.0|add_[qkv]_proj|to_add_out)"
           r"|ff(_context)?\.net\.(0\.proj|2)|norm1(_context)?\.linear)"
           r"|single_transformer_blocks\.0\.(proj_out|norm\.linear))")


@dataclass
class TinyLora:
    """One LoRA as PEFT made it: {diffusers module: (A, B)} and its config."""

    weights: dict
    config: object

    @property
    def scaling(self) -> float:
        return self.config.lora_alpha / self.config.r


def make_lora(tiny_dir: Path, seed: int, std: float = 0.2) -> TinyLora:
    """A PEFT LoRA on the tiny transformer with seeded random A and B (B is not zero)."""
    import torch
    from diffusers import FluxTransformer2DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = FluxTransformer2DModel.from_pretrained(str(tiny_dir / "transformer"))
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, lora_dropout=0.0)
    transformer.add_adapter(config)
    generator = torch.Generator().manual_seed(seed)
    state = get_peft_model_state_dict(transformer)
    weights: dict = {}
    for key in sorted(state):
        module, side = key.split(".lora_")
        tensor = torch.randn(state[key].shape, generator=generator) * std
        weights.setdefault(module, {})[side[0]] = tensor
    return TinyLora({m: (ab["A"], ab["B"]) for m, ab in weights.items()}, config)


def save_diffusers(lora: TinyLora, path: Path) -> Path:
    """diffusers' own layout and metadata (FluxKontextPipeline.save_lora_weights)."""
    from diffusers import FluxKontextPipeline

    layers = {}
    for module, (down, up) in lora.weights.items():
        layers[f"{module}.lora_A.weight"] = down
        layers[f"{module}.lora_B.weight"] = up
    metadata = {"r": lora.config.r, "lora_alpha": lora.config.lora_alpha,
                "target_modules": sorted(lora.weights)}
    FluxKontextPipeline.save_lora_weights(path.parent, transformer_lora_layers=layers,
                                          weight_name=path.name,
                                          transformer_lora_adapter_metadata=metadata)
    return path


def _bfl_pairs(lora: TinyLora):
    """(BFL module name, A, B with scaling) with q/k/v fused the way BFL's model has them."""
    import torch

    s = lora.scaling
    w = lora.weights
    for module, bfl in DOUBLE.items():
        down, up = w[f"transformer_blocks.0.{module}"]
        yield f"double_blocks.0.{bfl}", down, up * s
    for bfl, parts in QKV.items():
        pairs = [w[f"transformer_blocks.0.{part}"] for part in parts]
        yield (f"double_blocks.0.{bfl}", torch.cat([a for a, _ in pairs]),
               torch.block_diag(*[b for _, b in pairs]) * s)
    for module, bfl in SINGLE.items():
        down, up = w[f"single_transformer_blocks.0.{module}"]
        yield f"single_blocks.0.{bfl}", down, up * s


def save_kohya(lora: TinyLora, path: Path, comfyui: bool = False) -> Path:
    """kohya sd-scripts (`lora_unet_…`) or ComfyUI (`diffusion_model.…`), with alphas."""
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for bfl, down, up in _bfl_pairs(lora):
        rank = down.shape[0]
        # kohya multiplies by alpha / rank at run time: undo the scaling folded into B.
        name = f"diffusion_model.{bfl}" if comfyui else "lora_unet_" + bfl.replace(".", "_")
        tensors[f"{name}.lora_down.weight"] = down.contiguous()
        tensors[f"{name}.lora_up.weight"] = (up / lora.scaling).contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(float(rank * lora.scaling))
    save_file(tensors, str(path), metadata={"ss_base_model_version": "flux1"})
    return path


def save_bfl(lora: TinyLora, path: Path, prefix: str = "") -> Path:
    """BFL's layout (`double_blocks.0.img_attn.qkv.lora_A.weight`), scaling in B; fal's
    Kontext trainer writes the same under `base_model.model.`."""
    from safetensors.torch import save_file

    tensors = {}
    for bfl, down, up in _bfl_pairs(lora):
        tensors[f"{prefix}{bfl}.lora_A.weight"] = down.contiguous()
        tensors[f"{prefix}{bfl}.lora_B.weight"] = up.contiguous()
    save_file(tensors, str(path))
    return path


def save_xlabs(lora: TinyLora, path: Path) -> Path:
    """XLabs' layout for the projections (`processor.proj_lora1.down.weight`), scaling in B."""
    from safetensors.torch import save_file

    names = {"transformer_blocks.0.attn.to_out.0": "double_blocks.0.processor.proj_lora1",
             "transformer_blocks.0.attn.to_add_out": "double_blocks.0.processor.proj_lora2",
             "single_transformer_blocks.0.proj_out": "single_blocks.0.processor.proj_lora"}
    tensors = {}
    for module, name in names.items():
        down, up = lora.weights[module]
        tensors[f"{name}.down.weight"] = down.contiguous()
        tensors[f"{name}.up.weight"] = (up * lora.scaling).contiguous()
    save_file(tensors, str(path))
    return path


def save_sdxl(path: Path) -> Path:
    """An SDXL UNet LoRA's keys (kohya names), small shapes."""
    import torch
    from safetensors.torch import save_file

    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{name}.lora_down.weight": torch.zeros(4, 640),
               f"{name}.lora_up.weight": torch.zeros(640, 4), f"{name}.alpha": torch.tensor(4.0)},
              str(path), metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    return path


def save_full_size_shapes(path: Path) -> Path:
    """A diffusers-layout FLUX LoRA with the real model's widths: wrong shapes for tiny."""
    import torch
    from safetensors.torch import save_file

    module = "transformer.transformer_blocks.0.attn.to_q"
    save_file({f"{module}.lora_A.weight": torch.zeros(4, 3072),
               f"{module}.lora_B.weight": torch.zeros(3072, 4)}, str(path))
    return path


def save_corrupt(path: Path) -> Path:
    """Bytes that are not a safetensors file."""
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + bytes(64))
    return path
