"""BFL's original single-file key layout for a FluxTransformer2DModel state dict: the
inverse of diffusers' `convert_flux_transformer_checkpoint_to_diffusers`, so tests can
write the layout BFL publishes (works on meta tensors too)."""

from __future__ import annotations

import torch

# diffusers name -> BFL name, for parameters that are only renamed.
_RENAMED = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
}
_DOUBLE_RENAMED = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
}
# RMSNorm weights: diffusers `<name>.weight` -> BFL `<name>.scale`.
_DOUBLE_NORMS = {
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
}


def _block_count(sd: dict, prefix: str) -> int:
    return 1 + max(int(k.split(".")[1]) for k in sd if k.startswith(prefix))


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    """diffusers' norm_out is (scale, shift); BFL's final adaLN is (shift, scale)."""
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _double_block(sd: dict, i: int, out: dict) -> None:
    p, q = f"transformer_blocks.{i}.", f"double_blocks.{i}."
    for s in ("weight", "bias"):
        for ours, theirs in _DOUBLE_RENAMED.items():
            out[f"{q}{theirs}.{s}"] = sd.pop(f"{p}{ours}.{s}")
        out[f"{q}img_attn.qkv.{s}"] = torch.cat([sd.pop(f"{p}attn.to_{x}.{s}") for x in "qkv"])
        added = [sd.pop(f"{p}attn.add_{x}_proj.{s}") for x in "qkv"]
        out[f"{q}txt_attn.qkv.{s}"] = torch.cat(added)
    for ours, theirs in _DOUBLE_NORMS.items():
        out[f"{q}{theirs}.scale"] = sd.pop(f"{p}{ours}.weight")


def _single_block(sd: dict, i: int, out: dict) -> None:
    p, q = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
    for s in ("weight", "bias"):
        out[f"{q}modulation.lin.{s}"] = sd.pop(f"{p}norm.linear.{s}")
        fused = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
        out[f"{q}linear1.{s}"] = torch.cat([sd.pop(f"{p}{x}.{s}") for x in fused])
        out[f"{q}linear2.{s}"] = sd.pop(f"{p}proj_out.{s}")
    out[f"{q}norm.query_norm.scale"] = sd.pop(f"{p}attn.norm_q.weight")
    out[f"{q}norm.key_norm.scale"] = sd.pop(f"{p}attn.norm_k.weight")


def diffusers_to_bfl(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FluxTransformer2DModel state dict in BFL's original single-file key layout."""
    sd, out = dict(state_dict), {}
    for i in range(_block_count(sd, "transformer_blocks.")):
        _double_block(sd, i, out)
    for i in range(_block_count(sd, "single_transformer_blocks.")):
        _single_block(sd, i, out)
    for s in ("weight", "bias"):
        for ours, theirs in _RENAMED.items():
            out[f"{theirs}.{s}"] = sd.pop(f"{ours}.{s}")
        out[f"final_layer.adaLN_modulation.1.{s}"] = _swap_halves(sd.pop(f"norm_out.linear.{s}"))
    assert not sd, f"unconverted keys: {sorted(sd)}"
    return {k: v.contiguous() for k, v in out.items()}
