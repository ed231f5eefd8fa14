"""LoRAs per job on the tiny checkpoint (CPU): the folder listing, every layout people
download, scales, combinations, refusals that leave the engine working, bit-identical
no-LoRA jobs, the adapter cache, and switching under torch.compile without recompiling."""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.lora_files import (
    make_lora,
    save_bfl,
    save_corrupt,
    save_diffusers,
    save_full_size_shapes,
    save_kohya,
    save_sdxl,
    save_xlabs,
)
from PIL import Image

from pipelines.contract import EditRequest, LoraChoice, RunControl
from pipelines.errors import InvalidInput
from pipelines.loras.cache import AdapterCache
from pipelines.loras.choices import check_choices
from pipelines.loras.library import LoraLibrary

#: Same LoRA (seed 1), written in each layout; the diffusers file is the reference.
PROMPT, SIDE, STEPS = "make it red", 256, 1
SAME_LORA = {"style/red": "diffusers", "formats/kohya": "kohya", "formats/comfyui": "comfyui",
             "formats/bfl": "bfl", "formats/fal": "bfl"}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, tiny_dir) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    for sub in ("style", "formats", "bad"):
        (folder / sub).mkdir()
    red, blue = make_lora(tiny_dir, seed=1), make_lora(tiny_dir, seed=2)
    save_diffusers(red, folder / "style" / "red.safetensors")
    shutil.copy(folder / "style" / "red.safetensors", folder / "twin.safetensors")
    save_diffusers(blue, folder / "blue.safetensors")
    save_kohya(red, folder / "formats" / "kohya.safetensors")
    save_kohya(red, folder / "formats" / "comfyui.safetensors", comfyui=True)
    save_bfl(red, folder / "formats" / "bfl.safetensors")
    save_bfl(red, folder / "formats" / "fal.safetensors", prefix="base_model.model.")
    save_xlabs(red, folder / "xlabs.safetensors")
    save_corrupt(folder / "bad" / "corrupt.safetensors")
    save_sdxl(folder / "bad" / "sdxl.safetensors")
    save_full_size_shapes(folder / "bad" / "full_size.safetensors")
    (folder / "notes.txt").write_text("not a LoRA")
    return folder


@pytest.fixture(scope="module")
def lora_engine(tiny_dir, lora_dir):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions, LoraOptions
    from pipelines.weights.source import resolve_weights

    engine = KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(
        device="cpu", demo=True, loras=LoraOptions(lora_dir)))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def stock(tiny_dir, lora_dir):
    """Stock diffusers with a LoRA loaded its own documented way (load_lora_weights)."""
    import torch
    from diffusers import FluxKontextPipeline

    pipe = FluxKontextPipeline.from_pretrained(str(tiny_dir), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)

    @functools.cache
    def run(name: str) -> np.ndarray:
        pipe.load_lora_weights(str(lora_dir / f"{name}.safetensors"), adapter_name="x")
        try:
            out = pipe(image=None, prompt=PROMPT, width=SIDE, height=SIDE,
                       max_area=SIDE * SIDE, num_inference_steps=STEPS, guidance_scale=2.5,
                       generator=torch.Generator("cpu").manual_seed(7)).images[0]
        finally:
            pipe.delete_adapters("x")
        return np.asarray(out).astype(int)

    return run


@pytest.fixture(scope="module")
def base(lora_engine) -> np.ndarray:
    """The no-LoRA image of `request()`."""
    return pixels(lora_engine)


def request(*loras: LoraChoice, image=None, width=SIDE, height=SIDE,
            steps=STEPS) -> EditRequest:
    return EditRequest(prompt=PROMPT, image=image, width=width, height=height, steps=steps,
                       guidance_scale=2.5, seed=7, loras=tuple(loras))


def pixels(engine, *loras: LoraChoice, job: EditRequest | None = None,
           **kwargs) -> np.ndarray:
    job = job or request(*loras, **kwargs)
    return np.asarray(engine.run(job, RunControl()).image).astype(int)


def lora(name: str, scale: float = 1.0) -> LoraChoice:
    return LoraChoice(name, scale)


def test_listing_names_every_file_with_layout_rank_base_model_and_verdict(lora_dir):
    entries = {entry.name: entry for entry in LoraLibrary(lora_dir).entries()}
    assert sorted(entries) == ["bad/corrupt", "bad/full_size", "bad/sdxl", "blue",
                               "formats/bfl", "formats/comfyui", "formats/fal",
                               "formats/kohya", "style/red", "twin", "xlabs"]
    red = entries["style/red"]
    assert (red.layout, red.rank, red.loads, red.problem) == ("diffusers", 4, True, None)
    assert red.size_bytes == (lora_dir / "style" / "red.safetensors").stat().st_size
    assert entries["formats/kohya"].base_model == "flux1"  # kohya's ss_base_model_version
    assert {entries[n].layout for n in SAME_LORA} == set(SAME_LORA.values())
    assert entries["xlabs"].layout == "xlabs"
    assert not entries["bad/corrupt"].loads
    assert "not a readable .safetensors file" in entries["bad/corrupt"].problem
    sdxl = entries["bad/sdxl"]
    assert not sdxl.loads and "SDXL UNet LoRA" in sdxl.problem
    assert sdxl.base_model == "sdxl_base_v1-0"
    # Wrong shapes show only when the tensors are loaded against the model (see below).
    assert entries["bad/full_size"].loads and not entries["bad/full_size"].verified


@pytest.mark.parametrize("name", sorted(SAME_LORA))
def test_every_layout_loads_and_matches_diffusers_own_loader(lora_engine, stock, base, name):
    reference = stock("style/red")
    ours = pixels(lora_engine, lora(name))
    assert np.abs(ours - base).max() > 20  # the LoRA changes the image
    assert np.abs(ours - reference).max() <= 1


def test_xlabs_layout_matches_diffusers_own_loader(lora_engine, stock, base):
    ours = pixels(lora_engine, lora("xlabs"))
    assert np.abs(ours - base).max() > 5
    assert np.abs(ours - stock("xlabs")).max() <= 1


def test_scale_zero_is_no_lora_and_scale_changes_the_output(lora_engine, base):
    assert np.array_equal(pixels(lora_engine, lora("style/red", 0.0)), base)
    full, half = pixels(lora_engine, lora("style/red")), pixels(lora_engine, lora("style/red", 0.5))
    negative = pixels(lora_engine, lora("style/red", -1.0))
    for a, b in [(full, half), (half, base), (negative, base), (negative, full)]:
        assert not np.array_equal(a, b)


def test_two_loras_combine_and_order_does_not_matter(lora_engine):
    red, blue = pixels(lora_engine, lora("style/red")), pixels(lora_engine, lora("blue"))
    result = lora_engine.run(request(lora("style/red"), lora("blue")), RunControl())
    both = np.asarray(result.image).astype(int)
    assert [c.name for c in result.loras.applied] == ["blue", "style/red"]  # slot order
    assert np.array_equal(both, pixels(lora_engine, lora("blue"), lora("style/red")))
    assert not np.array_equal(both, red) and not np.array_equal(both, blue)
    # The same LoRA in two slots adds its delta twice: the same as scale 2 in one slot.
    twice = pixels(lora_engine, lora("style/red"), lora("twin"))
    assert np.abs(twice - pixels(lora_engine, lora("style/red", 2.0))).max() <= 1


def test_no_lora_job_after_lora_jobs_is_bit_identical_to_an_engine_without_loras(
        lora_engine, tiny_engine):
    reference = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    never = pixels(tiny_engine, image=reference, width=320, height=240)
    pixels(lora_engine, lora("style/red"), lora("blue", -0.7), lora("xlabs"))
    assert np.array_equal(pixels(lora_engine, image=reference, width=320, height=240), never)


@pytest.mark.parametrize(("name", "says"), [
    ("bad/corrupt", "not a readable .safetensors file"),
    ("bad/sdxl", "not a FLUX transformer LoRA"),
    ("bad/full_size", "tensor shapes do not match this model"),
    ("missing", "unknown LoRA 'missing'"),
])
def test_bad_loras_are_refused_and_the_next_job_is_unaffected(lora_engine, name, says):
    expected = pixels(lora_engine, lora("blue"))
    with pytest.raises(InvalidInput) as info:
        lora_engine.run(request(lora("blue"), lora(name)), RunControl())
    assert repr(name) in str(info.value) and says in str(info.value)
    assert np.array_equal(pixels(lora_engine, lora("blue")), expected)
    listed = {entry.name: entry for entry in lora_engine.loras.entries()}
    if name in listed:
        assert not listed[name].loads and says in listed[name].problem


@pytest.mark.parametrize(("choices", "says"), [
    ([lora("a"), lora("b"), lora("c"), lora("d")], "loras: at most 3 LoRAs per job, got 4"),
    ([lora("a"), lora("a", 0.5)], "loras[1].name: 'a' is listed twice"),
    ([lora("a", 2.5)], "loras[0].scale: must be a number from -2 to 2, got 2.5"),
    ([lora("b"), lora("a", math.nan)], "loras[1].scale"),
    ([lora(" ")], "loras[0].name: must be a non-empty LoRA name"),
])
def test_job_rules_name_the_entry_and_the_rule(lora_engine, choices, says):
    with pytest.raises(InvalidInput, match=r".*".join(map(_escape, says.split()))):
        check_choices(tuple(choices))
    with pytest.raises(InvalidInput):
        lora_engine.run(request(*choices), RunControl())


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_an_engine_without_a_lora_folder_refuses_loras(tiny_engine):
    with pytest.raises(InvalidInput, match="no LoRA folder"):
        tiny_engine.run(request(lora("style/red")), RunControl())


def test_a_repeated_lora_comes_from_the_cache_and_a_changed_file_is_read_again(
        lora_engine, lora_dir, tiny_dir):
    pixels(lora_engine, lora("blue"))
    before = lora_engine.loras.stats()
    again = lora_engine.run(request(lora("blue")), RunControl()).loras
    assert (again.cache_hits, again.cache_misses) == (1, 0)
    assert lora_engine.loras.stats().hits == before.hits + 1
    assert before.bytes > 0 and before.entries >= 1
    # A file dropped in (or replaced) while the engine runs is used by the next job.
    save_diffusers(make_lora(tiny_dir, seed=3), lora_dir / "dropped.safetensors")
    assert "dropped" in [entry.name for entry in lora_engine.loras.entries()]
    first = lora_engine.run(request(lora("dropped")), RunControl())
    assert (first.loras.cache_hits, first.loras.cache_misses) == (0, 1)
    # (another size: a file system with coarse timestamps still sees the change)
    shutil.copy(lora_dir / "xlabs.safetensors", lora_dir / "dropped.safetensors")
    replaced = lora_engine.run(request(lora("dropped")), RunControl())
    assert replaced.loras.cache_misses == 1
    assert np.array_equal(np.asarray(replaced.image), pixels(lora_engine, lora("xlabs")))


def test_the_adapter_cache_evicts_the_least_recently_used_by_bytes():
    class Blob:
        def __init__(self, nbytes: int) -> None:
            self.nbytes = nbytes

    cache = AdapterCache(capacity_bytes=100)
    cache.put("a", Blob(40))
    cache.put("b", Blob(40))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", Blob(40))  # evicts b
    assert cache.get("b") is None and cache.get("c") is not None
    cache.put("huge", Blob(101))  # larger than the capacity: not kept, nothing evicted
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (2, 80, 1)
    assert (stats.hits, stats.misses) == (2, 1)


def test_which_tiers_take_loras():
    from pipelines.levers.plan import Capabilities, plan_engine
    from pipelines.loras.manager import LoraManager, tier_problem

    h100 = Capabilities(cuda=True, compute_capability=(9, 0), torchao=True)
    assert tier_problem(plan_engine("exact", "full", "cpu", Capabilities())) is None
    exact = plan_engine("exact", "full", "cuda", h100)
    assert tier_problem(exact) is None and exact.fuse_qkv
    # LoRAs target q, k and v separately: an engine with a LoRA folder does not fuse them.
    adjusted = LoraManager("/nonexistent").adjust_plan(exact)
    assert not adjusted.fuse_qkv and "fused QKV is off" in adjusted.notes[-1]
    assert tier_problem(plan_engine("fp8", "full", "cuda", h100)) is None
    assert tier_problem(plan_engine("turbo", "full", "cuda", h100)) is None
    for tier, mode in [("exact", "24gb"), ("exact", "16gb"), ("fp8", "24gb")]:
        assert "--memory-mode full" in tier_problem(plan_engine(tier, mode, "cuda", h100))


def test_the_turbo_tiers_float8_linears_take_loras_outside_the_quantised_matmul(
        tiny_dir, lora_dir, monkeypatch):
    """turbo = torchao float8 linears + the step cache, on CPU (torch's CPU _scaled_mm
    computes the float8 matmuls once torchao's GPU check is bypassed; hand-built plan)."""
    from torchao.quantization import quant_api

    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions, LoraOptions
    from pipelines.levers.plan import EnginePlan, StepCacheSpec
    from pipelines.weights.source import resolve_weights

    monkeypatch.setattr(quant_api, "_check_hardware_support", lambda granularity: None)
    plan = EnginePlan(tier="turbo", memory_mode="full", device="cpu", dtype="bfloat16",
                      fp8_linears=True, step_cache=StepCacheSpec())
    engines = [KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(
        device="cpu", plan=plan,
        loras=folder and LoraOptions(folder))) for folder in (None, lora_dir)]
    for engine in engines:
        engine.load()
    plain, with_loras = engines
    to_q = with_loras.pipe.transformer.transformer_blocks[0].attn.to_q
    # the base weight is torchao's float8 tensor subclass; the LoRA slot stays bf16
    assert "Float8" in type(to_q.get_base_layer().weight).__name__
    assert to_q.lora_A["kontext_lora_0"].weight.dtype == torch_dtype("bfloat16")
    never = pixels(plain, job=request(steps=4))
    red = pixels(with_loras, job=request(lora("style/red"), steps=4))
    assert np.abs(red - never).max() > 20
    assert np.array_equal(pixels(with_loras, job=request(steps=4)), never)


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def _compiled_lora_engine(tiny_dir, lora_dir, backend: str, slots: int):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions, LoraOptions
    from pipelines.engine.warmup import ShapeCase
    from pipelines.levers.plan import CompileSpec, EnginePlan
    from pipelines.weights.source import resolve_weights

    plan = EnginePlan(tier="exact", memory_mode="full", device="cpu", dtype="float32",
                      compile=CompileSpec(backend=backend))
    engine = KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(
        device="cpu", demo=True, plan=plan, warmup_steps=1,
        loras=LoraOptions(lora_dir, slots=slots, max_rank=4)))
    engine.load()
    # The engine's own warm-up (no LoRA, then each count of active slots), one small size.
    engine.warmup([ShapeCase(SIDE, SIDE, None, None)])
    return engine


def _switch_without_recompiling(engine, eager) -> None:
    """Switch LoRAs, scales, counts and sizes; dynamo must reuse the warm-up's graphs."""
    import torch

    with torch._dynamo.config.patch(error_on_recompile=True):
        base = pixels(engine)
        red = pixels(engine, lora("style/red"))
        half = pixels(engine, lora("formats/kohya", 0.5))
        mixed = pixels(engine, lora("blue"), lora("style/red", -1.0)) \
            if engine.loras.max_loras > 1 else None
        other_size = pixels(engine, lora("xlabs"), width=320, height=224)
        after = pixels(engine)
    # The values copied into the slots reach the compiled graphs ...
    assert np.abs(red - eager(lora("style/red"))).max() <= 1
    assert np.abs(half - eager(lora("formats/kohya", 0.5))).max() <= 1
    if mixed is not None:
        assert np.abs(mixed - eager(lora("blue"), lora("style/red", -1.0))).max() <= 1
    assert np.abs(other_size - eager(lora("xlabs"), width=320, height=224)).max() <= 1
    # ... and switching them off restores the no-LoRA output bit for bit.
    assert np.array_equal(after, base) and not np.array_equal(red, base)


def test_switching_loras_under_compile_never_recompiles(tiny_dir, lora_dir, lora_engine):
    """dynamo with the eager backend: the same guards (so the same recompiles) as inductor,
    without a C++ compiler; one slot keeps the warm-up to two traced variants. Slot rank 4
    equals the test LoRAs' rank (no padding), 64 in the other tests (padding)."""
    import torch

    engine = _compiled_lora_engine(tiny_dir, lora_dir, "eager", slots=1)
    try:
        _switch_without_recompiling(engine, lambda *c, **k: pixels(lora_engine, *c, **k))
    finally:
        torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_switching_loras_under_inductor_never_recompiles(tiny_dir, lora_dir, lora_engine):
    """The same with inductor and two slots (compiles four block graphs per variant: slow)."""
    import torch

    engine = _compiled_lora_engine(tiny_dir, lora_dir, "inductor", slots=2)
    try:
        _switch_without_recompiling(engine, lambda *c, **k: pixels(lora_engine, *c, **k))
    finally:
        torch._dynamo.reset()
