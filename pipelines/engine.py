"""The FLUX.1 Kontext [dev] engine: diffusers' FluxKontextPipeline behind load/warm-up/run/close."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from pipelines.devices import pick_device
from pipelines.engine_plan import EnginePlan, MemoryMode, Tier, detect_capabilities, plan_engine
from pipelines.errors import Cancelled, EngineFailure, InvalidInput, OutOfMemory
from pipelines.grad_mode import GradMode, grad_context, is_inference_mode_failure
from pipelines.levers import apply_plan
from pipelines.loras.choices import MAX_LORAS_PER_JOB
from pipelines.loras.manager import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_MAX_RANK,
    LoraManager,
    switch_for_job,
)
from pipelines.memory_plan import check_memory_plan, settle_device_memory
from pipelines.references import (
    DEFAULT_REFERENCE_TOKEN_BUDGET,
    check_plan_takes_references,
    check_reference_token_budget,
    pipeline_inputs,
    plan_inputs,
)
from pipelines.shapes import ShapeCase, tokens_for
from pipelines.step_cache import prepare_step_cache
from pipelines.step_timer import StepTimer, steady_seconds
from pipelines.types import EditRequest, EditResult, EngineInfo, LoraSwitch, RunControl
from pipelines.warmup import warmup_edits
from pipelines.weights import WeightsSource, load_pipeline

log = logging.getLogger(__name__)

#: The pipeline packs 2×2 latent patches after 8× VAE downsampling.
SIZE_MULTIPLE = 16
#: Steps of the calibration edit that ends the warm-up (its steps after the first are the
#: first steady-state step time); turbo runs 4 so that a predicted step is among them.
CALIBRATION_STEPS = 3
#: Weight of the newest job in the steady step-time estimate (exponential moving average).
STEP_TIME_WEIGHT = 0.3


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
        pipeline_factory: Callable[[], Any] | None = None,
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
        # A memory mode whose weights and activations cannot fit its cap (or this GPU) is
        # refused here, with the numbers, before any weight is read.
        self.memory_report = check_memory_plan(source, self.plan)
        #: inference_mode unless it failed on this engine's tensors (pipelines/grad_mode.py).
        self.grad_mode: GradMode = "inference_mode"
        self._steady_step: float | None = None
        # bf16 is what the real weights ship in; CPU bf16 is slow and lossy, so fp32 there.
        self.dtype = getattr(torch, self.plan.dtype)
        self.warmup_size = warmup_size
        self.warmup_steps = warmup_steps
        #: Builds the pipeline in place of reading `source` (benchmarks: random weights made
        #: on the device from a seed); it must return components in eval() mode.
        self.pipeline_factory = pipeline_factory
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
        if self.memory_report:
            self.info.extra["memory_plan"] = self.memory_report
        if lora_dir is not None:
            self.info.extra["loras"] = f"{lora_dir} ({lora_slots} per job, rank ≤ {lora_max_rank})"

    def load(self) -> None:
        """Load the weights (offline) onto the device."""
        started = time.perf_counter()
        from pipelines.kontext_multi import KontextMultiReferencePipeline

        stock = self.pipeline_factory() if self.pipeline_factory else \
            load_pipeline(self.source, self.dtype)
        pipe = KontextMultiReferencePipeline.from_stock(stock)
        install = None if self.loras is None else \
            (lambda transformer: self.loras.install(transformer, self.plan))
        backend = apply_plan(pipe, self.plan, before_compile=install)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.info.extra["attention"] = backend or "diffusers default"
        # What the loaded engine holds, measured after freeing the loading's cached blocks
        # and resetting the peaks (not the allocator's pools from loading).
        self.info.extra.update(settle_device_memory(self.device))
        log.info("loaded %s on %s in %.1fs (%s)", self.source.describe(), self.device,
                 time.perf_counter() - started, self.info.extra)

    def warmup(self, cases: list[ShapeCase] | None = None, calibrate: bool = True) -> None:
        """Run real edits so the first request pays no lazy-initialisation or compile costs,
        then one calibration edit at warmup_size whose steady steps seed the step-time
        estimate (steady_step_seconds): the compile runs never count.

        With compilation the edits are pipelines/warmup.warmup_edits (or `cases`), so that
        no request compiles in steady state, LoRA slots included. `calibrate=False` skips
        the calibration edit (tests that only need the compiled shapes).
        """
        edits = warmup_edits(self.plan, cases, self.reference_token_budget)
        for case, references in edits:
            self._warmup_edit(case, self.warmup_steps, references)
        if self.loras is not None and self.plan.compile is not None:
            self._warmup_lora_variants([case for case, _ in edits])
        if not calibrate:
            return
        width, height = self.warmup_size
        steps = max(self.warmup_steps, CALIBRATION_STEPS + (self.plan.step_cache is not None))
        result = self._warmup_edit(ShapeCase(width, height, width, height), steps)
        self._steady_step = result.step_seconds

    def _warmup_lora_variants(self, cases: list[ShapeCase]) -> None:
        """Trace the compiled variant of each count of active LoRA slots (PEFT loops over
        the active adapters); with dynamic shapes one size per variant is enough."""
        if self.plan.compile is not None and self.plan.compile.dynamic:
            cases = cases[:1]
        try:
            for count in range(1, self.loras.max_loras + 1):
                self._lora_warmup = count
                for case in cases:
                    self._warmup_edit(case, self.warmup_steps)
        finally:
            self._lora_warmup = 0

    def steady_step_seconds(self) -> float | None:
        """Seconds per denoising step in steady state (None before warm-up): seeded by the
        warm-up's calibration edit, then a moving average over the jobs' steady steps.
        Timed with CUDA events on a GPU; compile and warm-up runs excluded."""
        return self._steady_step

    def _warmup_edit(self, case: ShapeCase, steps: int, references: int = 0) -> EditResult:
        image = None
        if case.ref_width is not None and case.ref_height is not None:
            image = Image.new("RGB", (case.ref_width, case.ref_height), (128, 128, 128))
        request = EditRequest(
            prompt="warm-up edit", image=image, width=case.width, height=case.height,
            steps=steps, guidance_scale=2.5, seed=0, references=(image,) * references,
        )
        result = self._run(request, RunControl())
        tokens = tokens_for(case.width, case.height) + result.reference_tokens
        log.info("warm-up edit %dx%d (%d image tokens), %d steps: %.2fs, %.3fs/step steady",
                 case.width, case.height, tokens, steps, result.elapsed, result.step_seconds)
        return result

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        """Run one edit. Raises Cancelled, InvalidInput, OutOfMemory or EngineFailure."""
        result = self._run(request, control)
        previous = self._steady_step
        self._steady_step = result.step_seconds if previous is None else \
            (1 - STEP_TIME_WEIGHT) * previous + STEP_TIME_WEIGHT * result.step_seconds
        return result

    def _run(self, request: EditRequest, control: RunControl) -> EditResult:
        """One edit, falling back to no_grad for good if inference_mode fails on it."""
        try:
            return self._edit(request, control)
        except EngineFailure as exc:
            if not is_inference_mode_failure(exc.__cause__, self.grad_mode):
                raise
            log.warning("inference_mode failed on this engine's tensors (%s); running "
                        "under no_grad from now on", exc.__cause__)
            self.grad_mode = "no_grad"
            return self._edit(request, control)

    def _edit(self, request: EditRequest, control: RunControl) -> EditResult:
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
        timer = StepTimer(cuda=self.device == "cuda")

        # 2. Per-request randomness: a fresh CPU generator, so a seed gives the same
        #    noise on every device. The step cache (turbo) starts this job's schedule.
        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        prepare_step_cache(pipe.transformer, request.steps)
        start_hook = pipe.transformer.register_forward_pre_hook(timer.mark_start)

        def on_step_end(pipeline, step: int, timestep, callback_kwargs):
            timer.mark()
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
            with grad_context(self.grad_mode), pipe.appending(appended):
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
            start_hook.remove()
            # Whatever happened, the next job starts without LoRAs.
            if self.loras is not None:
                self.loras.reset()

        # 6. Timings: the decoded image is on the host, so every step's event has completed.
        elapsed = time.perf_counter() - started
        steps = timer.step_seconds()
        return EditResult(image=image, elapsed=elapsed, denoise_seconds=sum(steps),
                          steps=len(steps), step_seconds=steady_seconds(steps),
                          input_sizes=inputs.sizes, reference_tokens=inputs.tokens, loras=loras)

    def _switch_loras(self, request: EditRequest) -> LoraSwitch | None:
        return switch_for_job(self.loras, request.loras, self._lora_warmup)

    def _decode(self, latents, height: int, width: int) -> Image.Image:
        pipe = self.pipe
        latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
        latents = (latents / pipe.vae.config.scaling_factor) + pipe.vae.config.shift_factor
        decoded = pipe.vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(decoded, output_type="pil")[0]

    def _free_memory(self) -> None:
        import torch

        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the pipeline and release device memory."""
        self.pipe = None
        if self.loras is not None:
            self.loras.close()
        self._free_memory()
