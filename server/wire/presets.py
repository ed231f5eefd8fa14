"""The 17 `style_preset` values as prompt templates (written for this project).

Kontext [dev] follows edit instructions, so each template keeps the user's instruction
first, names the target look in concrete visual terms, and says what to preserve.
Templates are positive text only: negative prompts do nothing without true CFG.
"""

from __future__ import annotations

from typing import get_args

from server.wire.base import WireModel
from server.wire.models import StylePreset

_KEEP = "Keep the composition, framing, poses and the identity of every subject unchanged."

#: preset name → the look, in visual terms. `{instruction}` is the user's prompt.
STYLE_LOOKS: dict[str, str] = {
    "3d-model": "a polished CG 3D render: fully modelled subjects, fine surface detail, "
    "dramatic volumetric lighting",
    "analog-film": "a vintage analog film photograph: faded, slightly desaturated colours, "
    "visible film grain, soft vignette, 35 mm look",
    "anime": "a Japanese anime key visual: clean line work, cel shading, vivid saturated colours",
    "cinematic": "a cinematic film still: shallow depth of field, soft bokeh, moody colour "
    "grade, subtle film grain",
    "comic-book": "a comic-book panel: bold black inks, flat vivid colours, graphic-novel "
    "shading",
    "craft-clay": "a claymation scene: everything sculpted from soft modelling clay, simple "
    "rounded forms, visible fingerprints and tool marks",
    "digital-art": "digital concept art: painterly brushwork, illustrative detail, "
    "matte-painting finish",
    "enhance": "the same style, enhanced: sharper focus, cleaner edges, richer detail and a "
    "professional finish, with no change of style",
    "fantasy-art": "an ethereal fantasy illustration: magical glowing light, dreamy "
    "atmosphere, painterly detail",
    "isometric": "an isometric diorama: axonometric 3/4 top-down view, crisp edges, clean "
    "geometry, vivid colours",
    "line-art": "a minimalist line drawing: clean continuous black strokes on white, little or "
    "no shading",
    "low-poly": "low-poly 3D art: surfaces built from visible flat polygon facets, simple "
    "flat-shaded colours",
    "neon-punk": "cyberpunk neon art: glowing magenta and cyan highlights, deep purple "
    "shadows, high contrast",
    "origami": "folded-paper origami craft: every object made of folded paper with crisp "
    "creases, pleats and paper texture",
    "photographic": "a realistic photograph: natural light, true-to-life colour, lens depth of "
    "field, fine detail",
    "pixel-art": "low-resolution 16-bit pixel art: blocky square pixels, limited colour "
    "palette, no anti-aliasing",
    "texture": "a close-up, top-down surface texture swatch: flat even lighting, seamless "
    "tileable material detail filling the frame",
}

assert set(STYLE_LOOKS) == set(get_args(StylePreset)), "every preset needs a template"


def apply_style(prompt: str, preset: str | None) -> str:
    """The prompt that reaches the pipeline: the instruction, restyled when a preset is set."""
    if preset is None:
        return prompt
    look = STYLE_LOOKS[preset]
    keep = "Keep the layout and lighting unchanged." if preset == "enhance" else _KEEP
    return f"{prompt.strip()}. Render the whole image as {look}. {keep}"


def model_prompt(config: WireModel) -> str:
    """The prompt the model gets for a job's config: its style preset applied when it has
    one (what the content filter's prompt checkpoint must see)."""
    return apply_style(config.prompt, getattr(config, "style_preset", None))  # type: ignore[attr-defined]
