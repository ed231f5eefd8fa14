"""Several input images in one Kontext edit: what each one is fed as, within a token budget.

The first image is the canvas (the one being edited, fed exactly as stock
FluxKontextPipeline feeds its one image); the others are references, in order. How the
references reach the transformer is the *method*:

  * ``offset``: every image at rotary index 1 (where Kontext was trained to look), laid
    side by side in height/width so that no two overlap (ComfyUI's default layout);
  * ``index``: every image at height/width offset 0, each with its own first rotary
    coordinate: canvas 1, references 2, 3, 4;
  * ``stitch``: canvas and references pasted into one strip image, which Kontext then sees
    as its single reference (the only method a one-image Kontext build can take).

Plain arithmetic on sizes: importing this module imports no torch or diffusers. The limits
(how many images, the token budgets) are in pipelines/contract.py, where the server reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from pipelines.contract import (
    DEFAULT_REFERENCE_METHOD,
    DEFAULT_REFERENCE_TOKEN_BUDGET,
    LARGEST_CANVAS_TOKENS,
    MAX_INPUT_IMAGES,
    MAX_REFERENCES,
    MIN_REFERENCE_TOKEN_BUDGET,
    MIN_REFERENCE_TOKENS,
    PIXELS_PER_TOKEN_SIDE,
    REFERENCE_METHODS,
    ReferenceMethod,
    nearest_preferred,
    tokens_for,
)
from pipelines.errors import InvalidInput
from pipelines.levers.plan import EnginePlan

#: The widest stitched strip: 256 tokens, the last column bf16 rotary ids hold exactly.
MAX_STRIP_WIDTH = 256 * PIXELS_PER_TOKEN_SIDE
#: Kontext's first rotary coordinate: 0 for the image being generated, 1 for its reference.
CANVAS_INDEX = 1

_SIDE = PIXELS_PER_TOKEN_SIDE


@dataclass(frozen=True)
class FedImage:
    """One input image as the transformer sees it: pixel size, rotary index, token offsets."""

    width: int
    height: int
    index: int = CANVAS_INDEX
    top: int = 0
    left: int = 0

    @property
    def tokens(self) -> int:
        """Latent tokens this image adds to the sequence."""
        return tokens_for(self.width, self.height)


@dataclass(frozen=True)
class InputPlan:
    """What every input image of one job is fed as; `method` is None without references."""

    method: ReferenceMethod | None
    fed: tuple[FedImage, ...]

    @property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each input as used, in input order (for stitch: its tile)."""
        return tuple((image.width, image.height) for image in self.fed)

    @property
    def tokens(self) -> int:
        """Tokens the inputs add after the output's own tokens."""
        return sum(image.tokens for image in self.fed)

    @property
    def strip_size(self) -> tuple[int, int]:
        """(width, height) of the stitched strip (stitch only)."""
        return sum(image.width for image in self.fed), max(image.height for image in self.fed)


def check_reference_token_budget(budget: int) -> None:
    """Refuse a budget that cannot hold the largest canvas plus three smallest references."""
    if budget < MIN_REFERENCE_TOKEN_BUDGET:
        raise InvalidInput(
            f"reference token budget {budget} is below the minimum {MIN_REFERENCE_TOKEN_BUDGET}"
            f": the canvas keeps its Kontext size (up to {LARGEST_CANVAS_TOKENS} tokens) and "
            f"each of up to {MAX_REFERENCES} references needs at least "
            f"{MIN_REFERENCE_TOKENS} tokens (256×256 px)")


def check_plan_takes_references(plan: EnginePlan) -> None:
    """Refuse references on an engine that would compile a new graph for them.

    Every tier and memory mode takes references: they only lengthen the image stream,
    whose length is already the one dynamic dimension of the compiled blocks. Only a
    static-shape compile (one graph per token count; no tier plans one) cannot.
    """
    if plan.compile is not None and not plan.compile.dynamic:
        raise InvalidInput(
            "input: this engine takes one image per job: its transformer is compiled for "
            "static shapes, and references make a new image-token count per job; compile "
            "with dynamic shapes (every --tier does) to send references")


def plan_inputs(canvas: Image.Image | None, references: tuple[Image.Image, ...],
                method: str, budget: int = DEFAULT_REFERENCE_TOKEN_BUDGET) -> InputPlan:
    """The size, index and offset of every input, or InvalidInput naming `input[i]`.

    Without references the canvas gets exactly what stock diffusers gives it. With them,
    all inputs together add at most `budget` tokens; sides are multiples of 16.
    """
    if method not in REFERENCE_METHODS:
        raise InvalidInput(f"reference_method: {method!r} is not one of "
                           f"{', '.join(REFERENCE_METHODS)}")
    if len(references) > MAX_REFERENCES:
        raise InvalidInput(f"input: at most {MAX_INPUT_IMAGES} images (the canvas and "
                           f"{MAX_REFERENCES} references), got {1 + len(references)}")
    if canvas is None:
        if references:
            raise InvalidInput("input[0]: references need a canvas, the first image, to edit")
        return InputPlan(None, ())
    images = (canvas, *references)
    for position, image in enumerate(images):
        _check_image(position, image)
    if not references:
        return InputPlan(None, (FedImage(*canvas_size(canvas)),))
    if method == "stitch":
        return InputPlan("stitch", _stitch_tiles(images, budget))
    sizes = _reference_sizes(images, budget)
    place = _index_layout if method == "index" else _offset_layout
    return InputPlan(method, place(sizes))  # type: ignore[arg-type]


def longest_reference_count(side: int, budget: int) -> int:
    """How many side×side references make the longest image stream `budget` allows (for
    the warm-up: one reference fills the default budget exactly, larger budgets take three)."""
    square = Image.new("RGB", (side, side))
    return max(range(1, MAX_REFERENCES + 1), key=lambda count: plan_inputs(
        square, (square,) * count, DEFAULT_REFERENCE_METHOD, budget).tokens)


def _check_image(position: int, image: object) -> None:
    if not isinstance(image, Image.Image):
        raise InvalidInput(f"input[{position}]: expected an image, got {type(image).__name__}")
    width, height = image.size
    if min(width, height) < _SIDE:
        raise InvalidInput(f"input[{position}]: the image is {width}x{height}; each side must "
                           f"be at least {_SIDE} px")


def canvas_size(image: Image.Image) -> tuple[int, int]:
    """The size FluxKontextPipeline feeds an image at (its preferred Kontext resolution).

    Stock floors the size to multiples of 16 before taking the aspect ratio.
    """
    width, height = image.size
    return nearest_preferred(width - width % _SIDE, height - height % _SIDE)


def fit_tokens(width: int, height: int, tokens: int) -> tuple[int, int]:
    """The largest multiple-of-16 size at width:height's aspect with at most `tokens` tokens."""
    if tokens_for(width, height) <= tokens:
        return width, height
    scale = math.sqrt(tokens * _SIDE * _SIDE / (width * height))
    return (max(_SIDE, _floor(width * scale)), max(_SIDE, _floor(height * scale)))


def _floor(pixels: float) -> int:
    return int(pixels) // _SIDE * _SIDE


def _reference_sizes(images: tuple[Image.Image, ...], budget: int) -> list[tuple[int, int]]:
    """Canvas at its stock size; references snapped to their preferred Kontext resolution,
    then shrunk to an equal share of what the canvas leaves of the budget."""
    canvas = canvas_size(images[0])
    share = (budget - tokens_for(*canvas)) // (len(images) - 1)
    return [canvas] + [fit_tokens(*canvas_size(image), share) for image in images[1:]]


def _index_layout(sizes: list[tuple[int, int]]) -> tuple[FedImage, ...]:
    """Each image in its own rotary index (canvas 1, references 2, 3, 4), all at offset 0."""
    return tuple(FedImage(w, h, index=CANVAS_INDEX + i) for i, (w, h) in enumerate(sizes))


def _offset_layout(sizes: list[tuple[int, int]]) -> tuple[FedImage, ...]:
    """All at index 1; each next image goes right of or below the images so far, whichever
    keeps their bounding box closer to square (ComfyUI's `offset` and stable-diffusion.cpp's
    layout, in token units). The canvas stays at (0, 0), where stock puts it."""
    bottom = right = 0
    fed = []
    for width, height in sizes:
        rows, cols = height // _SIDE, width // _SIDE
        top = left = 0
        if rows + bottom > cols + right:
            left = right
        else:
            top = bottom
        bottom, right = max(bottom, rows + top), max(right, cols + left)
        fed.append(FedImage(width, height, CANVAS_INDEX, top, left))
    return tuple(fed)


def _stitch_tiles(images: tuple[Image.Image, ...], budget: int) -> tuple[FedImage, ...]:
    """One strip, left to right in input order, every tile the same height and its own
    aspect ratio; the tallest strip whose tokens fit the budget and whose width fits
    MAX_STRIP_WIDTH (stock feeds the strip's ids in the pipeline's dtype)."""
    aspects = [image.width / image.height for image in images]
    height = max(_SIDE, _floor(min(math.sqrt(budget * _SIDE * _SIDE / sum(aspects)),
                                   MAX_STRIP_WIDTH / sum(aspects))))
    while True:
        widths = [max(_SIDE, _floor(height * aspect)) for aspect in aspects]
        # Tiles narrower than one token are widened to one: shrink until the strip fits.
        fits = tokens_for(sum(widths), height) <= budget and sum(widths) <= MAX_STRIP_WIDTH
        if fits:
            break
        if height == _SIDE:
            widest = max(range(len(aspects)), key=aspects.__getitem__)
            raise InvalidInput(f"input[{widest}]: too wide to stitch: the strip of all inputs "
                               f"would be wider than {MAX_STRIP_WIDTH} px even 16 px tall")
        height -= _SIDE
    lefts = [sum(widths[:i]) // _SIDE for i in range(len(widths))]
    return tuple(FedImage(w, height, CANVAS_INDEX, 0, left) for w, left in zip(widths, lefts,
                                                                            strict=True))


def stitch(images: tuple[Image.Image, ...], plan: InputPlan) -> Image.Image:
    """Paste the inputs into the strip `plan` describes (Lanczos, as diffusers resizes)."""
    strip = Image.new("RGB", plan.strip_size)
    for image, tile in zip(images, plan.fed, strict=True):
        resized = image.convert("RGB").resize((tile.width, tile.height), Image.LANCZOS)
        strip.paste(resized, (tile.left * _SIDE, tile.top * _SIDE))
    return strip


@dataclass(frozen=True)
class AppendedReferences:
    """References to encode and append after the canvas's tokens, with their plan entries."""

    images: tuple[Image.Image, ...]
    fed: tuple[FedImage, ...]


def pipeline_inputs(canvas: Image.Image | None, references: tuple[Image.Image, ...],
                    plan: InputPlan) -> tuple[Image.Image | None, AppendedReferences | None]:
    """The `image` to hand FluxKontextPipeline and the references to append after it.

    Without references: the canvas, untouched (the stock path). stitch: the strip, as the
    one image. index/offset: the canvas, plus the references for the pipeline to append.
    """
    if plan.method is None:
        return canvas, None
    if plan.method == "stitch":
        return stitch((canvas, *references), plan), None  # type: ignore[arg-type]
    return canvas, AppendedReferences(references, plan.fed[1:])
