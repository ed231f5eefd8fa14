"""BFL's single-file transformer layout: loaded through the server's own path, and checked.

The tiny transformer is written in BFL's original key layout (the inverse of diffusers'
`convert_flux_transformer_checkpoint_to_diffusers`), then loaded with `resolve_weights` +
`load_pipeline` against a base folder whose transformer weights were deleted, so every
transformer parameter must have come from the single file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pipelines.weights.check import check_weights
from pipelines.weights.source import DEFAULT_REPO, load_pipeline, resolve_weights
from pipelines.weights.tiny import write_tiny_checkpoint

TRANSFORMER_FILE = "transformer/diffusion_pytorch_model.safetensors"

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


class _TorchWithTinySplit:
    """`torch`, except that split() scales FLUX's hard-coded single-block split to tiny width.

    diffusers' converter splits `linear1` with `inner_dim = 3072` written into the code
    (q, k, v of 3072 rows each, then a 4× MLP), so it can only convert full-width FLUX.
    When the sizes do not fit, the same q, k, v, 4×mlp split is made at the tensor's width;
    every other step of the conversion and loading is diffusers' own.
    """

    def __getattr__(self, name: str):
        return getattr(torch, name)

    @staticmethod
    def split(tensor: torch.Tensor, sizes, dim: int = 0):
        if sizes == (3072, 3072, 3072, 12288) and tensor.shape[dim] != sum(sizes):
            inner = tensor.shape[dim] // 7
            sizes = (inner, inner, inner, 4 * inner)
        return torch.split(tensor, sizes, dim=dim)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint, written once for this module."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="module")
def bfl_file(tiny_dir: Path) -> Path:
    """The tiny transformer saved in BFL's single-file layout."""
    path = tiny_dir.parent / "flux1-kontext-tiny.safetensors"
    save_file(diffusers_to_bfl(load_file(tiny_dir / TRANSFORMER_FILE)), path)
    return path


@pytest.fixture(scope="module")
def base_without_transformer_weights(tiny_dir: Path) -> Path:
    """The tiny checkpoint minus transformer weights (its transformer config.json stays)."""
    base = Path(shutil.copytree(tiny_dir, tiny_dir.parent / "base"))
    (base / TRANSFORMER_FILE).unlink()
    return base


def test_bfl_layout_has_bfl_keys(bfl_file: Path) -> None:
    keys = set(load_file(bfl_file))
    assert "double_blocks.0.img_attn.qkv.weight" in keys
    assert "single_blocks.0.linear1.weight" in keys
    assert "final_layer.adaLN_modulation.1.weight" in keys
    assert not any(k.startswith("transformer_blocks.") for k in keys)


def test_single_file_loads_every_parameter_exactly(
    tiny_dir: Path,
    bfl_file: Path,
    base_without_transformer_weights: Path,
    empty_hf_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from diffusers.loaders import single_file_utils

    monkeypatch.setattr(single_file_utils, "torch", _TorchWithTinySplit())
    source = resolve_weights(str(bfl_file), base=str(base_without_transformer_weights))
    assert source.kind == "single_file"
    pipe = load_pipeline(source, torch.float32)
    expected = load_file(tiny_dir / TRANSFORMER_FILE)
    loaded = pipe.transformer.state_dict()
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name


def test_check_single_file_with_base(bfl_file: Path, base_without_transformer_weights: Path):
    report = check_weights(str(bfl_file), base=str(base_without_transformer_weights))
    text = report.render()
    assert report.kind == "single_file" and report.loadable, text
    (component,) = report.components
    assert component.dtypes == {"F32"}
    assert component.parameters == sum(t.numel() for t in load_file(bfl_file).values())
    assert "key layout: bfl" in text
    assert f"{len(load_file(bfl_file))} tensors" in text
    assert report.matches_kontext_dev is False
    assert report.base is not None and report.base.is_tiny
    assert text.splitlines()[-1] == "OK: kontext serve can load this"


def test_check_single_file_without_cached_base(bfl_file: Path, empty_hf_cache: Path) -> None:
    report = check_weights(str(bfl_file))
    assert not report.loadable
    verdict = report.render().splitlines()[-1]
    assert DEFAULT_REPO in verdict and "not in the local Hugging Face cache" in verdict


def test_check_diffusers_layout_single_file(tiny_dir: Path) -> None:
    report = check_weights(str(tiny_dir / TRANSFORMER_FILE), base=str(tiny_dir))
    assert report.loadable
    assert "key layout: diffusers" in report.render()


def test_check_file_that_is_not_a_transformer(tiny_dir: Path) -> None:
    vae_file = tiny_dir / "vae" / "diffusion_pytorch_model.safetensors"
    report = check_weights(str(vae_file), base=str(tiny_dir))
    assert not report.loadable
    assert "does not hold a FLUX transformer" in report.render().splitlines()[-1]
