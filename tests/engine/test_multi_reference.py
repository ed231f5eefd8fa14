"""Multi-reference edits on the tiny checkpoint (CPU): one canvas and up to three references,
fed by index, offset or stitch, within the reference token budget.

The engine runs are made once per module (each costs seconds on CPU) while a hook records
what the transformer was given; the tests read those records. The engine compiles its
blocks (dynamo with the eager backend: inductor's guards without a C++ compiler) and runs
its warm-up first; every recorded run then happens under `error_on_recompile`, so the
records also prove that no count of inputs or method recompiles after warm-up.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from pipelines.contract import PREFERRED_KONTEXT_RESOLUTIONS, EditRequest, RunControl, tokens_for
from pipelines.errors import InvalidInput
from pipelines.levers.plan import (
    MEMORY_MODES,
    TIERS,
    Capabilities,
    CompileSpec,
    EnginePlan,
    plan_engine,
)
from pipelines.references.plan import (
    DEFAULT_REFERENCE_TOKEN_BUDGET,
    LARGEST_CANVAS_TOKENS,
    MIN_REFERENCE_TOKEN_BUDGET,
    REFERENCE_METHODS,
    check_plan_takes_references,
    plan_inputs,
)

WIDTH = HEIGHT = 256  # any multiple of 16 runs; small keeps the decode cheap
BUDGET = MIN_REFERENCE_TOKEN_BUDGET  # the smallest budget keeps the CPU runs short

CANVAS = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
RED = Image.new("RGB", (400, 400), (210, 40, 30))
TALL = Image.radial_gradient("L").resize((300, 520)).convert("RGB")
WIDE = Image.merge("RGB", [Image.linear_gradient("L").rotate(90).resize((600, 300))] * 3)


def edit(*references: Image.Image, method: str = "offset", width: int = WIDTH,
         height: int = HEIGHT, canvas: Image.Image | None = CANVAS) -> EditRequest:
    return EditRequest("put the red square on the canvas", canvas, width, height, steps=1,
                       guidance_scale=2.5, seed=11, references=references,
                       reference_method=method)


@dataclass
class Seen:
    """One engine run: its result and what the transformer was called with."""

    image: np.ndarray
    input_sizes: tuple[tuple[int, int], ...]
    reference_tokens: int
    hidden_tokens: int
    img_ids: np.ndarray


def run_recorded(engine, request: EditRequest) -> Seen:
    calls = []
    hook = engine.pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kwargs: calls.append(kwargs), with_kwargs=True)
    try:
        result = engine.run(request, RunControl())
    finally:
        hook.remove()
    (kwargs,) = calls  # one step, one forward
    return Seen(np.asarray(result.image), result.input_sizes, result.reference_tokens,
                kwargs["hidden_states"].shape[1], kwargs["img_ids"].float().numpy())


RUNS = {
    "one": edit(),
    "two": edit(RED),
    "four": edit(RED, TALL, WIDE),
    "four again": edit(RED, TALL, WIDE),
    "four reordered": edit(TALL, RED, WIDE),
    "four by index": edit(RED, TALL, WIDE, method="index"),
    "four stitched": edit(RED, TALL, WIDE, method="stitch"),
}


@pytest.fixture(scope="module")
def engine(tiny_dir):
    """The exact tier's engine plus regional compile (dynamic shapes), warmed up."""
    import torch

    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    plan = EnginePlan(tier="exact", memory_mode="full", device="cpu", dtype="float32",
                      compile=CompileSpec(backend="eager"))
    engine = KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(
        device="cpu", demo=True, plan=plan, warmup_steps=1, reference_token_budget=BUDGET))
    engine.load()
    engine.warmup()
    yield engine
    engine.close()
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def seen(engine) -> dict[str, Seen]:
    import torch

    with torch._dynamo.config.patch(error_on_recompile=True):
        return {name: run_recorded(engine, request) for name, request in RUNS.items()}


def test_single_image_path_equals_stock_diffusers_bit_for_bit(tiny_dir, seen):
    import torch
    from diffusers import FluxKontextPipeline

    stock = FluxKontextPipeline.from_pretrained(str(tiny_dir), torch_dtype=torch.float32)
    stock.set_progress_bar_config(disable=True)
    request = RUNS["one"]
    theirs = stock(image=CANVAS, prompt=request.prompt, width=WIDTH, height=HEIGHT,
                   max_area=WIDTH * HEIGHT, num_inference_steps=1, guidance_scale=2.5,
                   generator=torch.Generator("cpu").manual_seed(request.seed)).images[0]
    assert np.array_equal(seen["one"].image, np.asarray(theirs))
    # reported: the canvas at the preferred Kontext resolution stock picked (4:3 → 1184x880)
    assert seen["one"].input_sizes == ((1184, 880),)


def test_more_references_and_other_orders_change_the_output(seen):
    assert np.array_equal(seen["four"].image, seen["four again"].image)  # seeded, repeatable
    names = ["one", "two", "four", "four reordered", "four by index", "four stitched"]
    for first, second in itertools.combinations(names, 2):
        assert not np.array_equal(seen[first].image, seen[second].image), (first, second)


@pytest.mark.parametrize("name", list(RUNS))
def test_the_transformer_sees_the_reported_sizes_within_the_budget(seen, name):
    run = seen[name]
    output_tokens = tokens_for(WIDTH, HEIGHT)
    assert run.reference_tokens == sum(tokens_for(w, h) for w, h in run.input_sizes)
    assert run.hidden_tokens == output_tokens + run.reference_tokens
    assert run.reference_tokens <= BUDGET
    assert all(w % 16 == 0 and h % 16 == 0 for w, h in run.input_sizes)
    assert len(run.input_sizes) == len(RUNS[name].references) + 1
    if RUNS[name].reference_method != "stitch":
        assert run.input_sizes[0] == seen["one"].input_sizes[0]  # the canvas keeps its size


def _blocks(run: Seen) -> list[np.ndarray]:
    """The img_ids of each input image, in order (after the output's own tokens)."""
    ids = run.img_ids[tokens_for(WIDTH, HEIGHT):]
    counts = [tokens_for(w, h) for w, h in run.input_sizes]
    return np.split(ids, np.cumsum(counts)[:-1])


def test_index_gives_each_input_its_own_first_rotary_coordinate(seen):
    run = seen["four by index"]
    assert (run.img_ids[:tokens_for(WIDTH, HEIGHT), 0] == 0).all()  # the output: index 0
    for position, block in enumerate(_blocks(run)):
        assert (block[:, 0] == 1 + position).all()
        assert block[:, 1:].min(axis=0).tolist() == [0, 0]


@pytest.mark.parametrize("name", ["four", "four stitched"])
def test_offset_and_stitch_keep_index_one_and_never_overlap(seen, name):
    run = seen[name]
    positions = run.img_ids[tokens_for(WIDTH, HEIGHT):]
    assert (positions[:, 0] == 1).all()
    assert len({tuple(p) for p in positions[:, 1:].tolist()}) == len(positions)
    canvas = _blocks(run)[0]
    assert canvas[:, 1:].min(axis=0).tolist() == [0, 0]  # the canvas where stock puts it


def test_default_budget_holds_four_inputs_to_two_megapixel_images():
    big = Image.new("RGB", (1920, 1920))
    for method in REFERENCE_METHODS:
        plan = plan_inputs(big, (big, big, big), method)
        assert 0.95 * DEFAULT_REFERENCE_TOKEN_BUDGET < plan.tokens <= DEFAULT_REFERENCE_TOKEN_BUDGET
    assert 2 * tokens_for(1024, 1024) == DEFAULT_REFERENCE_TOKEN_BUDGET
    two = plan_inputs(big, (big,), "offset")
    assert two.sizes == ((1024, 1024), (1024, 1024))  # one reference: full size


def test_budget_holds_for_every_method_shape_and_count():
    images = {size: Image.new("RGB", size) for size in
              [(256, 1920), (300, 520), (1024, 1024), (1920, 800), (1920, 256)]}
    for budget in (MIN_REFERENCE_TOKEN_BUDGET, DEFAULT_REFERENCE_TOKEN_BUDGET, 20000):
        for count, method in itertools.product((1, 2, 3), REFERENCE_METHODS):
            for combo in itertools.combinations_with_replacement(images.values(), count + 1):
                plan = plan_inputs(combo[0], combo[1:], method, budget)
                assert plan.tokens <= budget, (budget, method, [i.size for i in combo])
                assert min(min(size) for size in plan.sizes) >= 16


def test_largest_canvas_constant_matches_diffusers():
    assert max(tokens_for(w, h) for w, h in PREFERRED_KONTEXT_RESOLUTIONS) == LARGEST_CANVAS_TOKENS


@pytest.mark.parametrize(("request_", "says"), [
    (edit(RED, RED, RED, RED), "input: at most 4 images (the canvas and 3 references), got 5"),
    (edit(RED, Image.new("RGB", (8, 300))), "input[2]: the image is 8x300; each side must be"),
    (edit(RED, "not an image"), "input[2]: expected an image, got str"),
    (edit(RED, method="mosaic"), "reference_method: 'mosaic' is not one of index, offset"),
    (edit(RED, canvas=None), "input[0]: references need a canvas"),
])
def test_bad_inputs_are_refused_naming_the_input(engine, request_, says):
    with pytest.raises(InvalidInput) as info:
        engine.run(request_, RunControl())
    assert says in str(info.value)


def test_a_budget_below_the_minimum_is_refused_at_construction(tiny_dir):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    with pytest.raises(InvalidInput, match=f"below the minimum {MIN_REFERENCE_TOKEN_BUDGET}"):
        KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(
            device="cpu", reference_token_budget=4096))


H100 = Capabilities(cuda=True, compute_capability=(9, 0), torchao=True, flash_attn_3=True)


def test_every_tier_and_memory_mode_takes_references_and_static_compile_refuses():
    for tier, memory_mode in itertools.product(TIERS, MEMORY_MODES):
        try:
            plan = plan_engine(tier, memory_mode, "cuda", H100)
        except InvalidInput:
            continue  # refused for its own reasons (turbo@16gb), before any job
        check_plan_takes_references(plan)
    static = EnginePlan(tier="exact", memory_mode="full", device="cuda", dtype="bfloat16",
                        compile=CompileSpec(dynamic=False))
    with pytest.raises(InvalidInput, match="compiled for static shapes"):
        check_plan_takes_references(static)
