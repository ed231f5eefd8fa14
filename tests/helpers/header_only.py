"""FLUX.1-Kontext-dev's layout at full size whose files hold safetensors headers only: the
data of each file is a sparse hole of the size its header says, so 16.9 billion parameters
cost no disk, and nothing that reads no tensor can tell it from the published checkpoint.
Laid out as the published repository is: CLIP's keys under `text_model.` (the layout before
transformers 5), T5's tied embedding stored once, T5 in two shards with an index."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
#: The real component configs (copied from the model repository's config files).
REAL = json.loads((ROOT / "benchmarks" / "kontext_dev_configs.json").read_text())


def write_header_only(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """A safetensors file (bf16) whose data is a sparse hole of the size its header says."""
    header, offset = {}, 0
    for name, tensor in tensors.items():
        size = tensor.numel() * 2
        header[name] = {"dtype": "BF16", "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as file:
        file.write(struct.pack("<Q", len(raw)) + raw)
        file.truncate(8 + len(raw) + offset)


def meta_state(name: str) -> dict[str, torch.Tensor]:
    """The state dict of the real-size component `name`, on the meta device."""
    import diffusers
    import transformers

    library, class_name = REAL["model_index"][name]
    cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
    with torch.device("meta"):
        if library == "diffusers":
            return cls.from_config(REAL[name]).state_dict()
        return cls._from_config(cls.config_class.from_dict(REAL[name])).state_dict()


def write_full_size_checkpoint(root: Path, tiny_dir: Path) -> Path:
    """The full-size layout in `root`, headers only; tokenizers and scheduler copied from
    the tiny checkpoint at `tiny_dir` (they hold no weights)."""
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(REAL["model_index"]))
    for name in ("scheduler", "tokenizer", "tokenizer_2"):
        shutil.copytree(tiny_dir / name, root / name)
    for name, config_file in (("scheduler", "scheduler_config.json"),
                              ("transformer", "config.json"), ("vae", "config.json"),
                              ("text_encoder", "config.json"), ("text_encoder_2", "config.json")):
        (root / name).mkdir(exist_ok=True)
        (root / name / config_file).write_text(json.dumps(REAL[name]))
    for name in ("transformer", "vae"):
        write_header_only(root / name / "diffusion_pytorch_model.safetensors", meta_state(name))
    # As published: CLIP's keys under text_model. (the layout before transformers 5).
    clip = {f"text_model.{key}": value for key, value in meta_state("text_encoder").items()}
    write_header_only(root / "text_encoder" / "model.safetensors", clip)
    # T5: the embedding once (encoder.embed_tokens is tied to shared), in two shards.
    t5 = meta_state("text_encoder_2")
    del t5["encoder.embed_tokens.weight"]
    names = sorted(t5)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        write_header_only(root / "text_encoder_2" / shard, {key: t5[key] for key in keys})
    weight_map = {key: shard for shard, keys in shards.items() for key in keys}
    (root / "text_encoder_2" / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    return root
