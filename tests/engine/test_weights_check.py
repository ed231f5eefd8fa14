"""`check_weights` on the tiny checkpoint, intact and damaged in each way it reports."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from pipelines.weights.check import check_weights, read_safetensors_header
from pipelines.weights.tiny import write_tiny_checkpoint

TRANSFORMER_FILE = "transformer/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint, written once for this module; tests must not change it."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture
def tiny_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may damage."""
    return Path(shutil.copytree(tiny_dir, tmp_path / "copy"))


def test_tiny_checkpoint_is_loadable_and_says_noise(tiny_dir: Path) -> None:
    report = check_weights(str(tiny_dir))
    text = report.render()
    assert report.loadable and report.kind == "folder"
    assert report.is_tiny and "NOISE" in text
    assert report.matches_kontext_dev is False
    assert "num_layers=1 (real 19)" in text
    assert text.splitlines()[-1] == "OK: kontext serve can load this"
    names = sorted(c.name for c in report.components)
    expected = "scheduler text_encoder text_encoder_2 tokenizer tokenizer_2 transformer vae"
    assert names == expected.split()


def test_parameter_count_and_dtypes_come_from_headers(tiny_dir: Path) -> None:
    components = check_weights(str(tiny_dir)).components
    transformer = next(c for c in components if c.name == "transformer")
    with safe_open(tiny_dir / TRANSFORMER_FILE, "pt") as f:
        expected = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    assert transformer.parameters == expected > 0
    assert transformer.dtypes == {"F32"}
    assert transformer.total_bytes == (tiny_dir / TRANSFORMER_FILE).stat().st_size


def test_missing_component_folder_is_named(tiny_copy: Path) -> None:
    shutil.rmtree(tiny_copy / "vae")
    report = check_weights(str(tiny_copy))
    assert not report.loadable
    verdict = report.render().splitlines()[-1]
    assert verdict.startswith("NOT LOADABLE:") and "vae/" in verdict


def test_missing_weight_file_is_named(tiny_copy: Path) -> None:
    (tiny_copy / "text_encoder_2" / "model.safetensors").unlink()
    report = check_weights(str(tiny_copy))
    assert not report.loadable
    assert any("text_encoder_2" in m for m in report.missing)


def test_truncated_file_is_reported_corrupt(tiny_copy: Path) -> None:
    path = tiny_copy / TRANSFORMER_FILE
    path.write_bytes(path.read_bytes()[:-1000])
    report = check_weights(str(tiny_copy))
    assert not report.loadable
    assert len(report.corrupt) == 1
    assert TRANSFORMER_FILE in report.corrupt[0] and "truncated" in report.corrupt[0]
    assert "CORRUPT: " + TRANSFORMER_FILE in report.render()


def test_garbage_header_is_reported_corrupt(tiny_copy: Path) -> None:
    (tiny_copy / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\xff" * 64)
    report = check_weights(str(tiny_copy))
    assert not report.loadable
    assert any(c.startswith("vae/diffusion_pytorch_model.safetensors") for c in report.corrupt)


def test_sharded_index_with_absent_shard(tiny_copy: Path) -> None:
    folder = tiny_copy / "transformer"
    header = read_safetensors_header(folder / "diffusion_pytorch_model.safetensors")
    weight_map = dict.fromkeys(header, "diffusion_pytorch_model.safetensors")
    weight_map["extra.weight"] = "diffusion_pytorch_model-00002-of-00002.safetensors"
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    report = check_weights(str(tiny_copy))
    assert not report.loadable
    assert any("00002-of-00002" in m for m in report.missing)


def test_folder_without_model_index(tiny_copy: Path) -> None:
    (tiny_copy / "model_index.json").unlink()
    report = check_weights(str(tiny_copy))
    assert not report.loadable
    assert "model_index.json" in report.render().splitlines()[-1]


def test_nonexistent_path(tmp_path: Path) -> None:
    report = check_weights(str(tmp_path / "nowhere"))
    assert not report.loadable
    assert "does not exist" in report.render().splitlines()[-1]


def test_repo_not_in_cache(empty_hf_cache: Path) -> None:
    report = check_weights("black-forest-labs/FLUX.1-Kontext-dev")
    assert report.kind == "repo" and not report.loadable
    verdict = report.render().splitlines()[-1]
    assert "not in the local Hugging Face cache" in verdict
    assert "hf download black-forest-labs/FLUX.1-Kontext-dev" in verdict


def test_repo_in_cache_is_checked(tiny_dir: Path, empty_hf_cache: Path) -> None:
    repo_dir = empty_hf_cache / "models--someone--tiny-kontext"
    commit = "0" * 40
    shutil.copytree(tiny_dir, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    report = check_weights("someone/tiny-kontext")
    assert report.kind == "repo" and report.loadable and report.is_tiny
    assert report.path == str(repo_dir / "snapshots" / commit)
