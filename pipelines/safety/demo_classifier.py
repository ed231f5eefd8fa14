"""The demo content-filter classifier: a tiny image classifier built from the real
transformers ViT classes, so `kontext serve --demo --safety block|flag` can show the filter
at work without the 343 MB real one. It flags mostly-red images, and only those.

Two labels, ("normal", "nsfw"), and weights arranged so that the answer is known: an image
whose patches are mostly red (mean red > 0.6) scores "nsfw" ≈ 1, any other ≈ 0. How:
the patch embedding writes (r - 0.6, 0.6 - r) per patch; attention with zero queries and
keys averages the tokens into the class token; the MLP adds nothing; after the final layer
norm the class token's first feature is +√2 or -√2 by the sign of (r - 0.6), and the head
turns that into a logit of ±4√2 for "nsfw" (probability 0.9965 or 0.0035).

The boundary is 0.6, not 0.5, because the tiny engine's outputs are noise whose mean is
about 0.50 in every channel: they must fall clearly on the "normal" side.
"""

from __future__ import annotations

from pathlib import Path

#: What `kontext serve --demo --safety block|flag` says its classifier does.
DEMO_CLASSIFIER_NOTE = ("demo classifier: flags mostly-red images as nsfw (a tiny model for "
                        "trying the filter, not a real NSFW classifier)")


def build_demo_classifier():
    """(model, processor) of the tiny ViT classifier, not saved."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                       intermediate_size=4, image_size=32, patch_size=16, qkv_bias=True,
                       id2label={0: "normal", 1: "nsfw"}, label2id={"normal": 0, "nsfw": 1},
                       problem_type="single_label_classification")
    model = ViTForImageClassification(config).eval()
    state = {name: torch.zeros_like(value) for name, value in model.state_dict().items()}
    for name in state:
        if "layernorm" in name and name.endswith("weight"):
            state[name] = torch.ones_like(state[name])
    conv = "vit.embeddings.patch_embeddings.projection"
    state[f"{conv}.weight"][0, 0] = 1 / 256   # mean red of the 16x16 patch
    state[f"{conv}.weight"][1, 0] = -1 / 256
    state[f"{conv}.bias"] = torch.tensor([-0.6, 0.6, 0.0, 0.0])
    for projection in ("v_proj", "o_proj"):
        state[f"vit.layers.0.attention.{projection}.weight"] = torch.eye(4)
    state["classifier.weight"][1] = torch.tensor([2.0, -2.0, 0.0, 0.0])
    model.load_state_dict(state)
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.0] * 3,
                                  image_std=[1.0] * 3)
    return model, processor


def write_demo_classifier(directory: Path) -> Path:
    """Save the tiny classifier as a real model folder (config, safetensors, processor)."""
    model, processor = build_demo_classifier()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def is_demo_classifier(directory: Path) -> bool:
    """Whether `directory` holds the demo classifier already (written by this module)."""
    import json

    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("id2label") == {"0": "normal", "1": "nsfw"} \
        and config.get("hidden_size") == 4 and (directory / "model.safetensors").is_file()


def ensure_demo_classifier(directory: Path) -> Path:
    """The demo classifier's folder, written once if it is not there yet."""
    if not is_demo_classifier(directory):
        write_demo_classifier(directory)
    return directory
