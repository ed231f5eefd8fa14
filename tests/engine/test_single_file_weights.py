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
from helpers.bfl_layout import diffusers_to_bfl
from safetensors.torch import load_file, save_file

from pipelines.weights.check import check_weights
from pipelines.weights.source import DEFAULT_REPO, load_pipeline, resolve_weights
from pipelines.weights.tiny import write_tiny_checkpoint

TRANSFORMER_FILE = "transformer/diffusion_pytorch_model.safetensors"


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


@pytest.fixture
def tiny_width_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """diffusers' BFL converter made to handle tiny width (as when loading, above)."""
    from diffusers.loaders import single_file_utils

    monkeypatch.setattr(single_file_utils, "torch", _TorchWithTinySplit())


def test_check_single_file_at_tiny_width_is_not_loadable(
        bfl_file: Path, base_without_transformer_weights: Path) -> None:
    # The truth: diffusers converts BFL's layout at FLUX's full width only, so serve could
    # not load this file. (At full width: tests/engine/test_weights_fit.py.)
    report = check_weights(str(bfl_file), base=str(base_without_transformer_weights))
    verdict = report.render().splitlines()[-1]
    assert not report.loadable
    assert "not a complete FLUX transformer in BFL's layout" in verdict, verdict


def test_check_single_file_with_base(bfl_file: Path, base_without_transformer_weights: Path,
                                     tiny_width_conversion: None) -> None:
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
