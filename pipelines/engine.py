"""The FLUX.1 Kontext [dev] engine: diffusers' FluxKontextPipeline behind load/warm-up/run/close."""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

from PIL import Image

from pipelines.engine_plan import EnginePlan, MemoryMode, Tier, detect_capabilities, plan_engine
from pipelines.errors import Cancelled, EngineFailure, InvalidInput, OutOfMemory
from pipelines.levers import apply_plan, prepare_step_cache, step_cache_context
from pipelines.loras.choices import MAX_LORAS_PER_JOB
from pipelines.loras.manager import DEFAULT_CACHE_BYTES, DEFAULT_MAX_RANK, LoraManager
from pipelines.references import (
    DEFAULT_REFERENCE_TOKEN_BUDGET,
    check_plan_takes_references,
    check_reference_token_budget,
    longest_reference_count,
    pipeline_inputs,
    plan_inputs,
)
from pipelines.shapes import OUTPUT_SIDES, ShapeCase, tokens_for, warmup_plan
from pipelines.types import EditRequest, EditResult, EngineInfo, LoraSwitch, RunControl
from pipelines.weights import WeightsSource, load_pipeline

log = logging.getLogger(__name__)

#: The pipeline packs 2×2 latent patches after 8× VAE downsampling.
SIZE_MULTIPLE = 16


def pick_device(requested: str) -> str:
    """Resolve "auto" to cuda when available; refuse "cuda" on a machine without it."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("--device cuda was asked for but no CUDA device is available")
    return requested


class KontextEngine:
    """Owns one FluxKontextPipeline on one device. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        source: WeightsSource,
        device: str = "auto",
        demo: bool = False,
        warmup_size: tuple[int, int] = (1024, 1024),
        warmup_steps: int = 2,
        tier: Tier = "exact",
        memory_mode: MemoryMode = "full",
        plan: EnginePlan | None = None,
        reference_token_budget: int = DEFAULT_REFERENCE_TOKEN_BUDGET,
        lora_dir: str | Path | None = None,
        lora_cache_bytes: int = DEFAULT_CACHE_BYTES,
        lora_max_rank: int = DEFAULT_MAX_RANK,
        lora_slots: int = MAX_LORAS_PER_JOB,
    ) -> None:
        import torch

        self.source = source
        self.device = pick_device(device)
        # The levers are decided here, before any weight is read, so that an unavailable
        # one (fp8 on CPU, say) fails at startup with InvalidInput saying what is missing.
        self.plan = plan or plan_engine(tier, memory_mode, self.device, detect_capabilities())
        check_reference_token_budget(reference_token_budget)
        self.reference_token_budget = reference_token_budget
        # LoRAs per job (pipelines/loras): only with a LoRA folder; None keeps stock behaviour.
        self.loras = None if lora_dir is None else \
            LoraManager(lora_dir, lora_cache_bytes, lora_max_rank, lora_slots)
        if self.loras is not None:
            self.plan = self.loras.adjust_plan(self.plan)
        self._lora_warmup = 0
        # bf16 is what the real weights ship in; CPU bf16 is slow and lossy, so fp32 there.
        self.dtype = getattr(torch, self.plan.dtype)
        self.warmup_size = warmup_size
        self.warmup_steps = warmup_steps
        self.pipe = None
        self.info = EngineInfo(
            model="FLUX.1-Kontext-dev" + (" (tiny random demo checkpoint)" if demo else ""),
            device=self.device,
            dtype=str(self.dtype).removeprefix("torch."),
            demo=demo,
            tier=self.plan.tier,
            extra={"weights": source.describe(), "memory_mode": self.plan.memory_mode,
                   "levers": ", ".join(self.plan.levers()) or "none",
                   "reference_token_budget": str(reference_token_budget)},
        )
        if lora_dir is not None:
            self.info.extra["loras"] = f"{lora_dir} ({lora_slots} per job, rank ≤ {lora_max_rank})"

    def load(self) -> None:
        """Load the weights (offline) onto the device."""
        started = time.perf_counter()
        from pipelines.kontext_multi import KontextMultiReferencePipeline

        pipe = KontextMultiReferencePipeline.from_stock(load_pipeline(self.source, self.dtype))
        install = None if self.loras is None else \
            (lambda transformer: self.loras.install(transformer, self.plan))
        apply_plan(pipe, self.plan, before_compile=install)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        log.info("loaded %s on %s in %.1fs", self.source.describe(), self.device,
                 time.perf_counter() - started)

    def warmup(self, cases: list[ShapeCase] | None = None) -> None:
        """Run real edits so the first request pays no lazy-initialisation or compile costs.

        Without compilation one edit at warmup_size is enough; with it, the shapes of
        pipelines/shapes.warmup_plan, so that no request compiles in steady state.
        `cases` replaces those shapes (tests and benchmarks warm up small ones).
        """
        width, height = self.warmup_size
        steps = self.warmup_steps
        if self.plan.step_cache is not None:
            # Four steps trace every step-cache branch (first update, predict, later
            # update) into the compiled graphs, so that no job compiles a new variant.
            steps = max(steps, 4)
        if cases is None:
            cases = [ShapeCase(width, height, width, height)]
            if self.plan.compile is not None:
                plan = warmup_plan(self.plan.compile.dynamic)
                log.info("warm-up plan: %s", plan.reason)
                cases = list(plan.cases)
        for case in cases:
            self._warmup_edit(case, steps)
        if self.plan.compile is not None and self.plan.compile.dynamic:
            # The longest image stream a job can send: the largest output and references
            # filling the reference budget (compiled here, and its memory peak met).
            side = OUTPUT_SIDES[-1]
            count = longest_reference_count(side, self.reference_token_budget)
            self._warmup_edit(ShapeCase(side, side, side, side), steps, count)
        if self.loras is not None and self.plan.compile is not None:
            self._warmup_lora_variants(cases, steps)

    def _warmup_lora_variants(self, cases: list[ShapeCase], steps: int) -> None:
        """Trace the compiled variant of each count of active LoRA slots (PEFT loops over
        the active adapters); with dynamic shapes one size per variant is enough."""
        if self.plan.compile is not None and self.plan.compile.dynamic:
            cases = cases[:1]
        try:
            for count in range(1, self.loras.max_loras + 1):
                self._lora_warmup = count
                for case in cases:
                    self._warmup_edit(case, steps)
        finally:
            self._lora_warmup = 0

    def _warmup_edit(self, case: ShapeCase, steps: int, references: int = 0) -> None:
        image = None
        if case.ref_width is not None and case.ref_height is not None:
            image = Image.new("RGB", (case.ref_width, case.ref_height), (128, 128, 128))
        request = EditRequest(
            prompt="warm-up edit", image=image, width=case.width, height=case.height,
            steps=steps, guidance_scale=2.5, seed=0, references=(image,) * references,
        )
        result = self.run(request, RunControl())
        tokens = tokens_for(case.width, case.height) + result.reference_tokens
        log.info("warm-up edit %dx%d (%d image tokens), %d steps: %.2fs", case.width,
                 case.height, tokens, steps, result.elapsed)

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        """Run one edit. Raises Cancelled, InvalidInput, OutOfMemory or EngineFailure."""
        import torch

        # 1. Check inputs
        if self.pipe is None:
            raise EngineFailure("engine is not loaded")
        if request.width % SIZE_MULTIPLE or request.height % SIZE_MULTIPLE:
            raise InvalidInput(f"width and height must be multiples of {SIZE_MULTIPLE}")
        if request.steps < 1:
            raise InvalidInput("steps must be at least 1")
        inputs = plan_inputs(request.image, request.references, request.reference_method,
                             self.reference_token_budget)
        if request.references:
            check_plan_takes_references(self.plan)
        pipe = self.pipe
        started = time.perf_counter()
        step_times: list[float] = []

        # 2. Per-request randomness: a fresh CPU generator, so a seed gives the same
        #    noise on every device.
        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        prepare_step_cache(pipe.transformer, self.plan.step_cache, request.steps)

        def on_step_end(pipeline, step: int, timestep, callback_kwargs):
            step_times.append(time.perf_counter())
            if control.cancel.is_set():
                # diffusers skips the remaining steps once _interrupt is set.
                pipeline._interrupt = True
            elif control.on_step is not None:
                control.on_step(step + 1, request.steps)
            return callback_kwargs

        # 3. Denoise. max_area = width*height keeps the output at exactly width × height
        #    (otherwise the pipeline rescales to 1024² at the requested aspect ratio).
        #    References ride along as appended tokens (index/offset) or in one strip
        #    image fed at its planned size (stitch); without them this is stock diffusers.
        try:
            image, appended = pipeline_inputs(request.image, request.references, inputs)
            # 3a. Switch this job's LoRAs in (none: slots off); InvalidInput changes nothing.
            loras = self._switch_loras(request)
            with torch.inference_mode(), pipe.appending(appended), \
                    step_cache_context(pipe.transformer, self.plan.step_cache):
                latents = pipe(
                    image=image, prompt=request.prompt,
                    width=request.width, height=request.height,
                    max_area=request.width * request.height,
                    num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
                    generator=generator, output_type="latent", return_dict=False,
                    callback_on_step_end=on_step_end, _auto_resize=inputs.method != "stitch",
                )[0]
                # 4. Stop before decoding if the job was cancelled.
                if control.cancel.is_set():
                    raise Cancelled("job cancelled")
                # 5. Decode exactly as diffusers does for output_type="pil".
                image = self._decode(latents, request.height, request.width)
        except (Cancelled, InvalidInput):
            raise
        except torch.cuda.OutOfMemoryError as exc:
            self._free_memory()
            raise OutOfMemory(f"out of GPU memory: {exc}") from exc
        except Exception as exc:
            self._free_memory()
            raise EngineFailure(f"{type(exc).__name__}: {exc}") from exc
        finally:
            # 6. Whatever happened, the next job starts without LoRAs.
            if self.loras is not None:
                self.loras.reset()

        elapsed = time.perf_counter() - started
        denoise = _denoise_seconds(step_times, started)
        return EditResult(image=image, elapsed=elapsed, denoise_seconds=denoise,
                          steps=len(step_times), input_sizes=inputs.sizes,
                          reference_tokens=inputs.tokens, loras=loras)

    def _switch_loras(self, request: EditRequest) -> LoraSwitch | None:
        if self.loras is None:
            if request.loras:
                raise InvalidInput("loras: this server has no LoRA folder (start it with "
                                   "--lora-dir DIR)")
            return None
        if self._lora_warmup:
            return self.loras.switch_blank(self._lora_warmup)
        return self.loras.switch(request.loras)

    def _decode(self, latents, height: int, width: int) -> Image.Image:
        pipe = self.pipe
        latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
        latents = (latents / pipe.vae.config.scaling_factor) + pipe.vae.config.shift_factor
        decoded = pipe.vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(decoded, output_type="pil")[0]

    def _free_memory(self) -> None:
        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the pipeline and release device memory."""
        self.pipe = None
        if self.loras is not None:
            self.loras.close()
        self._free_memory()


def _denoise_seconds(step_times: list[float], started: float) -> float:
    """Time spent denoising, from the step-end timestamps.

    The first step's start is not observable, so it is estimated as the mean step time;
    prompt encoding and the reference VAE encode are excluded.
    """
    if not step_times:
        return 0.0
    if len(step_times) == 1:
        return step_times[0] - started
    mean_step = (step_times[-1] - step_times[0]) / (len(step_times) - 1)
    return mean_step * len(step_times)
