"""`kontext weights check` says OK only for what serve would load: tensor names and shapes
are matched against the models the configs describe, on the meta device.

The full-size case is a checkpoint at the real geometry whose files hold headers only (their
data is a sparse hole of the right length, so 16 GB of "weights" cost no disk): it must pass
without any tensor being read, laid out as the published repository is (CLIP keys under
`text_model.`, T5's tied embedding stored once, sharded T5), and as BFL's single file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.bfl_layout import diffusers_to_bfl
from helpers.header_only import REAL, meta_state, write_full_size_checkpoint, write_header_only
from safetensors.torch import load_file, save_file

from pipelines.weights.check import check_weights

TRANSFORMER_FILE = "transformer/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def real_geometry(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    """FLUX.1-Kontext-dev's layout at full size, headers only; tiny tokenizers."""
    return write_full_size_checkpoint(tmp_path_factory.mktemp("real") / "FLUX.1-Kontext-dev",
                                      tiny_dir)


@pytest.fixture
def no_tensor_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way safetensors reads tensors raises, where the libraries' loaders call it too:
    the check must not need one."""
    import safetensors
    import safetensors.torch
    import transformers.modeling_utils

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was read")

    for module, name in ((safetensors, "safe_open"), (safetensors.torch, "load_file"),
                         (safetensors.torch, "safe_open"), (safetensors.torch, "load"),
                         (transformers.modeling_utils, "safe_open"),
                         (transformers.modeling_utils, "_safe_load_bytes")):
        monkeypatch.setattr(module, name, refuse)


def test_full_size_checkpoint_passes_without_reading_a_tensor(real_geometry: Path,
                                                               no_tensor_read: None) -> None:
    report = check_weights(str(real_geometry))
    text = report.render()
    assert report.loadable and report.matches_kontext_dev, text
    counts = {component.name: component.parameters for component in report.components}
    assert {name: counts[name] for name in REAL["parameter_counts"]} == \
        REAL["parameter_counts"]
    assert text.splitlines()[-1] == "OK: kontext serve can load this"


def test_bfl_single_file_at_full_size_passes(real_geometry: Path, tmp_path: Path,
                                             no_tensor_read: None) -> None:
    single = tmp_path / "flux1-kontext-dev.safetensors"
    write_header_only(single, diffusers_to_bfl(meta_state("transformer")))
    report = check_weights(str(single), base=str(real_geometry))
    assert report.loadable and report.matches_kontext_dev, report.render()


def test_a_single_file_missing_a_block_is_refused(real_geometry: Path, tmp_path: Path) -> None:
    state = diffusers_to_bfl(meta_state("transformer"))
    single = tmp_path / "flux1-kontext-dev.safetensors"
    write_header_only(single, {k: v for k, v in state.items() if "single_blocks.37." not in k})
    report = check_weights(str(single), base=str(real_geometry))
    verdict = report.render().splitlines()[-1]
    assert not report.loadable
    assert "single_transformer_blocks.37." in verdict and "missing" in verdict, verdict


def test_the_folder_that_used_to_pass(tmp_path: Path) -> None:
    # A model_index.json, an empty transformer config, 1000 random bytes as its weights.
    root = tmp_path / "broken"
    (root / "transformer").mkdir(parents=True)
    (root / "model_index.json").write_text('{"_class_name": "FluxKontextPipeline"}')
    (root / "transformer" / "config.json").write_text("{}")
    (root / TRANSFORMER_FILE).write_bytes(torch.randint(0, 256, (1000,), dtype=torch.uint8)
                                          .numpy().tobytes())
    report = check_weights(str(root))
    verdict = report.render().splitlines()[-1]
    assert not report.loadable and verdict.startswith("NOT LOADABLE")
    for name in ("scheduler", "text_encoder", "text_encoder_2", "tokenizer", "transformer",
                 "vae"):
        assert name in verdict
    # Listing the transformer does not help: its file is not safetensors.
    (root / "model_index.json").write_text(json.dumps(
        {"_class_name": "FluxKontextPipeline", "transformer": REAL["model_index"]["transformer"]}))
    assert f"corrupt {TRANSFORMER_FILE}" in check_weights(str(root)).render().splitlines()[-1]


def _rewrite(path: Path, change) -> None:
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def test_a_renamed_tensor_is_missing(tiny_copy: Path) -> None:
    _rewrite(tiny_copy / TRANSFORMER_FILE,
             lambda t: t.__setitem__("x_embedder.weight_old", t.pop("x_embedder.weight")))
    report = check_weights(str(tiny_copy))
    verdict = report.render().splitlines()[-1]
    assert not report.loadable
    assert "transformer: 1 tensor (x_embedder.weight) missing from its files" in verdict
    assert any("x_embedder.weight_old" in note for note in report.notes)


def test_a_tensor_of_the_wrong_shape(tiny_copy: Path) -> None:
    _rewrite(tiny_copy / "vae" / "diffusion_pytorch_model.safetensors",
             lambda t: t.__setitem__("decoder.conv_out.bias", torch.zeros(7)))
    verdict = check_weights(str(tiny_copy)).render().splitlines()[-1]
    assert "vae: wrong shape for 1 tensor (decoder.conv_out.bias)" in verdict


def test_a_config_that_does_not_match_its_files(tiny_copy: Path) -> None:
    config_file = tiny_copy / "transformer" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "num_layers": 2}))
    verdict = check_weights(str(tiny_copy)).render().splitlines()[-1]
    assert "transformer:" in verdict and "transformer_blocks.1." in verdict, verdict


def test_a_tokenizer_that_does_not_load(tiny_copy: Path) -> None:
    (tiny_copy / "tokenizer_2" / "tokenizer.json").write_text("{not json")
    report = check_weights(str(tiny_copy))
    assert not report.loadable
    assert any(problem.startswith("tokenizer_2: its") for problem in report.problems)


@pytest.fixture
def tiny_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may damage."""
    return Path(shutil.copytree(tiny_dir, tmp_path / "copy"))
