"""What a LoRA .safetensors file holds, read from its header alone (no tensor data, no torch).

Layouts people download for FLUX, and how each reaches the transformer:

  diffusers  `transformer.<module>.lora_A/B.weight` (diffusers, ai-toolkit, PEFT via diffusers)
  peft       the same module names without the `transformer.` prefix, or under PEFT's
             `base_model.model.`: the prefix is added, then as diffusers
  kohya      `lora_unet_double_blocks_0_img_attn_qkv.lora_down/up.weight` + `.alpha`
  comfyui    `diffusion_model.double_blocks.0.img_attn.qkv.lora_down/up.weight` + `.alpha`
  bfl        BFL module names with `lora_A/B` (bare, `diffusion_model.`, or fal's Kontext
             trainer's `base_model.model.`): renamed to the comfyui layout, then as it
  xlabs      `double_blocks.0.processor.qkv_lora1.down.weight`

diffusers' FLUX LoRA loader (FluxLoraLoaderMixin.lora_state_dict) converts kohya, comfyui and
xlabs itself; the two renames above (`rename_key`) cover the layouts its 0.42 release does
not recognise, or converts only at full size (fal's Kontext converter assumes 19+38 blocks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: Module names of diffusers' FluxTransformer2DModel that LoRAs target (top level).
DIFFUSERS_ROOTS = ("transformer_blocks.", "single_transformer_blocks.", "x_embedder.",
                   "context_embedder.", "norm_out.", "proj_out.", "time_text_embed.")
#: Module names of BFL's original FLUX layout (flux/model.py).
BFL_ROOTS = ("double_blocks.", "single_blocks.", "img_in.", "txt_in.", "time_in.",
             "vector_in.", "guidance_in.", "final_layer.")
#: Substrings that only Stable Diffusion (1.x/2.x/XL) UNet LoRAs have.
UNET_MARKERS = ("down_blocks", "up_blocks", "mid_block", "input_blocks", "output_blocks",
                "middle_block")
#: Metadata keys trainers use for the model a LoRA was trained on, most specific first.
BASE_MODEL_KEYS = ("modelspec.architecture", "ss_base_model_version", "base_model",
                   "ss_sd_model_name", "base_model_name")

#: Module names only FLUX.2's transformer (Flux2Transformer2DModel: klein) has.
FLUX2_MARKERS = ("to_qkv_mlp_proj", "double_stream_modulation", "single_stream_modulation",
                 ".linear_in.", "time_guidance_embed")
#: Words in a trainer's base-model claim that name FLUX.2.
FLUX2_CLAIMS = ("flux.2", "flux2", "flux-2", "klein")

_BFL_LORA = re.compile(r"^(?:diffusion_model\.|base_model\.model\.)?((?:"
                       + "|".join(re.escape(root) for root in BFL_ROOTS)
                       + r").*)\.lora_([AB])\.weight$")
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class FileHeader:
    """A safetensors file's tensor names, shapes and string metadata."""

    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HeaderVerdict:
    """What the header says about a LoRA file; `problem` is None when it looks loadable."""

    layout: str
    rank: int | None
    base_model: str | None
    problem: str | None = None
    warnings: tuple[str, ...] = ()
    #: The model family it is for: "kontext-dev" (FLUX.1) or "klein" (FLUX.2).
    family: str = "kontext-dev"


def lora_family(keys: list[str], claim: str | None) -> str:
    """"klein" when the keys name FLUX.2-only modules or the metadata claims FLUX.2, else
    "kontext-dev" (FLUX.1). BFL-named FLUX.2 LoRAs without a claim share FLUX.1's names:
    those are told apart when they load (their shapes do not fit)."""
    if any(marker in key for key in keys for marker in FLUX2_MARKERS):
        return "klein"
    if claim and any(word in claim.lower() for word in FLUX2_CLAIMS):
        return "klein"
    return "kontext-dev"


def read_header(path: Path) -> FileHeader:
    """Read names, shapes and metadata without reading tensor data (raises on a bad file)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        names = handle.keys()  # a safe_open handle is not iterable itself
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in names}
        metadata = dict(handle.metadata() or {})
    return FileHeader(shapes=shapes, metadata=metadata)


def rename_key(key: str) -> str:
    """The name diffusers' FLUX loader understands for `key` (unchanged when it already does).

    BFL-named `lora_A/B` become comfyui's `diffusion_model.….lora_down/up` (then kohya's
    converter, which handles any block count, does the rest: a shared A for the fused qkv is
    copied to q, k and v, B is split, exactly as diffusers' fal converter does at full size);
    bare or PEFT-prefixed diffusers names get the `transformer.` prefix.
    """
    match = _BFL_LORA.match(key)
    if match:
        side = "down" if match.group(2) == "A" else "up"
        return f"diffusion_model.{match.group(1)}.lora_{side}.weight"
    bare = key.removeprefix(_PEFT_PREFIX)
    if bare.startswith(DIFFUSERS_ROOTS) and ".lora_" in bare:
        return "transformer." + bare
    return key


def detect_layout(keys: list[str]) -> str:
    """The layout name of module docstring, or "unknown"."""
    def has(pattern: str) -> bool:
        return any(pattern in key for key in keys)

    if has("query_norm.scale"):
        return "bfl-control"
    if has(".processor.") and has("_lora"):
        return "xlabs"
    if any(_BFL_LORA.match(key) for key in keys):
        return "bfl"
    if any(key.startswith("lora_unet_") for key in keys):
        return "kohya"
    if any(key.startswith("diffusion_model.") for key in keys) and has(".lora_down."):
        return "comfyui"
    if any(key.startswith("transformer.") and ".lora_" in key for key in keys):
        return "diffusers"
    if any(key.removeprefix(_PEFT_PREFIX).startswith(DIFFUSERS_ROOTS) for key in keys):
        return "peft"
    return "unknown"


def judge_header(header: FileHeader) -> HeaderVerdict:
    """Layout, rank, claimed base model, and why the file cannot be a FLUX edit LoRA (if so)."""
    keys = list(header.shapes)
    layout = detect_layout(keys)
    rank = _rank(header.shapes)
    claim = next((header.metadata[key] for key in BASE_MODEL_KEYS if header.metadata.get(key)),
                 None)
    problem = _problem(keys, layout)
    family = lora_family(keys, claim)
    if claim is None:
        if problem is None:
            claim = "FLUX.2 (from the key layout)" if family == "klein" else \
                "FLUX.1 (from the key layout)"
        elif any(marker in key for key in keys for marker in UNET_MARKERS):
            claim = "Stable Diffusion / SDXL UNet (from the key layout)"
    warnings = ()
    if any(key.startswith(("lora_te", "text_encoder", "text_encoders.")) for key in keys):
        warnings = ("text-encoder weights are ignored: only the transformer part is applied",)
    return HeaderVerdict(layout=layout, rank=rank, base_model=claim, problem=problem,
                         warnings=warnings, family=family)


def _problem(keys: list[str], layout: str) -> str | None:
    if not keys:
        return "the file holds no tensors"
    if any(marker in key for key in keys for marker in UNET_MARKERS):
        return ("a Stable Diffusion / SDXL UNet LoRA (keys like "
                f"{next(k for k in keys if any(m in k for m in UNET_MARKERS))!r}), "
                "not a FLUX transformer LoRA")
    if any("dora_scale" in key or "lora_magnitude_vector" in key for key in keys):
        return "a DoRA adapter; only plain LoRA (A/B matrices) is supported"
    if any(marker in key for key in keys for marker in (".lokr_", ".hada_", "lokr_w1")):
        return "a LyCORIS LoKr/LoHa adapter; only plain LoRA (A/B matrices) is supported"
    if layout == "bfl-control":
        return ("a FLUX Control LoRA (it widens the input layer for a control image), "
                "not an edit LoRA for Kontext")
    if layout == "unknown":
        return f"not a known FLUX LoRA layout (first key {sorted(keys)[0]!r})"
    return None


def _rank(shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The largest rank of the down (A) matrices, as stored."""
    ranks = [shape[0] for key, shape in shapes.items()
             if len(shape) == 2 and (".lora_A." in key or ".lora_down." in key
                                     or key.endswith(".down.weight"))]
    return max(ranks) if ranks else None
