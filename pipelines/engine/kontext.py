"""The FLUX.1 Kontext [dev] engine: diffusers' FluxKontextPipeline behind load/warm-up/run/close."""

from __future__ import annotations

import logging
import time

from PIL import Image

from pipelines.contract import (
    TYPICAL_STEPS,
    EditRequest,
    EditResult,
    EngineInfo,
    LoraSwitch,
    MovingAverage,
    RunControl,
    tokens_for,
)
from pipelines.engine.devices import engine_failures, free_memory, pick_device
from pipelines.engine.grad_mode import GradMode, grad_context, is_inference_mode_failure
from pipelines.engine.options import EngineOptions
from pipelines.engine.request_checks import check_request_basics
from pipelines.engine.step_timer import StepWatch, steady_seconds
from pipelines.engine.warmup import ShapeCase, warmup_edits
from pipelines.errors import Cancelled, EngineFailure
from pipelines.levers.apply import apply_plan
from pipelines.levers.cuda_graphs import recorded_graphs, start_job
from pipelines.levers.plan import detect_capabilities, plan_engine
from pipelines.levers.step_cache import prepare_step_cache
from pipelines.loras.manager import LoraManager, switch_for_job
from pipelines.memory.plan import check_memory_plan, kontext_memory, settle_device_memory
from pipelines.parallel.check import check_tier, group_plan
from pipelines.parallel.group import (
    agreed,
    enable_context_parallel,
    join_group,
    leave_group,
)
from pipelines.references.plan import (
    InputPlan,
    check_plan_takes_references,
    check_reference_token_budget,
    pipeline_inputs,
    plan_inputs,
)
from pipelines.weights.source import WeightsSource, load_pipeline

log = logging.getLogger(__name__)

#: Steps of the calibration edit that ends the warm-up (its steps after the first are the
#: first steady-state step time); turbo runs 4 so that a predicted step is among them.
CALIBRATION_STEPS = 3
#: Weight of the newest job in the steady step-time estimate (exponential moving average).
STEP_TIME_WEIGHT = 0.3


class KontextEngine:
    """Owns one FluxKontextPipeline on one device. Not thread-safe: one caller at a time."""

    def __init__(self, source: WeightsSource, options: EngineOptions | None = None) -> None:
        import torch

        options = options or EngineOptions()
        self.source = source
        self.options = options
        self.device = pick_device(options.device)
        # The levers are decided here, before any weight is read, so that an unavailable
        # one (fp8 on CPU, say) fails at startup with InvalidInput saying what is missing.
        self.plan = options.plan or plan_engine(options.tier, options.memory_mode,
                                                self.device, detect_capabilities(),
                                                max_autotune=options.max_autotune)
        check_reference_token_budget(options.reference_token_budget)
        self.reference_token_budget = options.reference_token_budget
        # LoRAs per job (pipelines/loras): only with a LoRA folder; None keeps stock behaviour.
        lora = options.loras
        self.loras = None if lora is None else \
            LoraManager(lora.folder, lora.cache_bytes, lora.max_rank, lora.slots)
        if self.loras is not None:
            self.plan = self.loras.adjust_plan(self.plan)
        #: One rank of a context-parallel group (pipelines/parallel), or None.
        self.group = options.context_parallel
        if self.group is not None:
            check_tier(self.plan.tier, self.plan.memory_mode)
            self.plan = group_plan(self.plan)
        self._lora_warmup = 0
        #: CUDA graphs (pipelines/levers/cuda_graphs.py) of the next edit: "count" (a job),
        #: "off" (a warm-up compile edit: not a job) or "record" (the calibration edit).
        self._graphs = "count"
        # A memory mode whose weights and activations cannot fit its cap (or this GPU) is
        # refused here, with the numbers, before any weight is read.
        self.memory_report = check_memory_plan(source, self.plan)
        #: The plan behind it (None off CUDA): a model set sums its families' (models.py).
        self.memory = kontext_memory(source, self.plan) if self.memory_report else None
        #: inference_mode unless it failed on this engine's tensors (pipelines/engine/grad_mode.py).
        self.grad_mode: GradMode = "inference_mode"
        self._steady = MovingAverage(weight=STEP_TIME_WEIGHT)
        # bf16 is what the real weights ship in; CPU bf16 is slow and lossy, so fp32 there.
        self.dtype = getattr(torch, self.plan.dtype)
        self.pipe = None
        self.info = self._describe()

    def _describe(self) -> EngineInfo:
        options = self.options
        info = EngineInfo(
            model="FLUX.1-Kontext-dev" + (" (tiny random demo checkpoint)"
                                          if options.demo else ""),
            device=self.device, dtype=str(self.dtype).removeprefix("torch."),
            demo=options.demo, tier=self.plan.tier,
            extra={"weights": self.source.describe(), "memory_mode": self.plan.memory_mode,
                   "levers": ", ".join(self.plan.levers()) or "none",
                   # what a tier does without here, and why (fp8 attention without FA3, ...)
                   "notes": "; ".join(self.plan.notes) or "none",
                   "reference_token_budget": str(options.reference_token_budget)})
        if self.memory_report:
            info.extra["memory_plan"] = self.memory_report
        if self.group is not None:
            info.extra["context_parallel"] = self.group.describe()
        if options.loras is not None:
            lora = options.loras
            info.extra["loras"] = f"{lora.folder} ({lora.slots} per job, rank ≤ {lora.max_rank})"
        return info

    def load(self) -> None:
        """Load the weights (offline) onto the device."""
        started = time.perf_counter()
        from pipelines.references.pipeline import KontextMultiReferencePipeline

        if self.group is not None:
            join_group(self.group, self.device)  # blocks until every rank has joined
        factory = self.options.pipeline_factory
        stock = factory() if factory else load_pipeline(self.source, self.dtype)
        pipe = KontextMultiReferencePipeline.from_stock(stock)
        install = None if self.loras is None else \
            (lambda transformer: self.loras.install(transformer, self.plan))
        split = None if self.group is None else \
            (lambda transformer: enable_context_parallel(transformer, self.group, self.device,
                                                         self.plan.compile is not None))
        backend = apply_plan(pipe, self.plan, before_compile=install, after_attention=split)
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

        With compilation the edits are pipelines/engine/warmup.warmup_edits (or `cases`), so
        that no request compiles in steady state, LoRA slots included. `calibrate=False`
        skips the calibration edit (tests that only need the compiled shapes).
        """
        steps = self.options.warmup_steps
        width, height = self.options.warmup_size
        edits = warmup_edits(self.plan, cases, self.reference_token_budget,
                             common=ShapeCase(width, height, width, height))
        self._graphs = "off"
        try:
            for case, references in edits:
                self._warmup_edit(case, steps, references)
            if self.loras is not None and self.plan.compile is not None:
                self._warmup_lora_variants([case for case, _ in edits])
        finally:
            self._graphs = "count"
        if not calibrate:
            return
        steps = max(steps, CALIBRATION_STEPS + (self.plan.step_cache is not None))
        self._graphs = "record"
        try:
            result = self._warmup_edit(ShapeCase(width, height, width, height), steps)
        finally:
            self._graphs = "count"
        self._steady = MovingAverage(result.step_seconds, STEP_TIME_WEIGHT)
        self.info.extra["cuda_graphs"] = str(recorded_graphs(self.pipe.transformer))

    def _warmup_lora_variants(self, cases: list[ShapeCase]) -> None:
        """Trace the compiled variant of each count of active LoRA slots (PEFT loops over
        the active adapters); with dynamic shapes one size per variant is enough."""
        if self.plan.compile is not None and self.plan.compile.dynamic:
            cases = cases[:1]
        try:
            for count in range(1, self.loras.max_loras + 1):
                self._lora_warmup = count
                for case in cases:
                    self._warmup_edit(case, self.options.warmup_steps)
        finally:
            self._lora_warmup = 0

    def steady_step_seconds(self) -> float | None:
        """Seconds per denoising step in steady state (None before warm-up): seeded by the
        warm-up's calibration edit, then a moving average over the jobs' steady steps.
        Timed with CUDA events on a GPU; compile and warm-up runs excluded."""
        return self._steady.value

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
        if self.group is not None:
            control = agreed(control)  # every rank stops at the same step
        result = self._run(request, control)
        self._steady.add(result.step_seconds)
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
        # 1. Check inputs, and plan what each input image is fed as.
        inputs = self._check(request)
        started = time.perf_counter()
        # 2. Per-request state: the step cache (turbo) starts this job's schedule; the
        #    watch times, reports and interrupts the steps.
        schedule = prepare_step_cache(self.pipe.transformer, request.steps,
                                      self.pipe.scheduler)
        start_job(self.pipe.transformer, counted=self._graphs != "off",
                  record_now=self._graphs == "record")
        watch = StepWatch(self.pipe.transformer, control, request.steps,
                          cuda=self.device == "cuda")
        try:
            with engine_failures(self.device):
                # 3. Switch this job's LoRAs in (none: slots off); InvalidInput changes
                #    nothing.
                loras = switch_for_job(self.loras, request.loras, self._lora_warmup)
                with grad_context(self.grad_mode):
                    # 4. Denoise to latents.
                    latents = self._denoise(request, inputs, watch)
                    # 5. Stop before decoding if the job was cancelled.
                    if control.cancelled:
                        raise Cancelled("job cancelled")
                    # 6. Decode exactly as diffusers does for output_type="pil".
                    image = self._decode(latents, request.height, request.width)
        finally:
            watch.close()
            if self.loras is not None:
                self.loras.reset()  # whatever happened, the next job starts without LoRAs
        # 7. Timings: the decoded image is on the host, so every step's event has completed.
        return self._result(image, time.perf_counter() - started, watch, inputs, loras,
                            schedule)

    def _check(self, request: EditRequest) -> InputPlan:
        """The request's sizes and steps, and its inputs' plan; InvalidInput naming the rule."""
        check_request_basics(self.pipe, request)
        inputs = plan_inputs(request.image, request.references, request.reference_method,
                             self.reference_token_budget)
        if request.references:
            check_plan_takes_references(self.plan)
        return inputs

    def _denoise(self, request: EditRequest, inputs: InputPlan, watch: StepWatch):
        """The pipeline's denoising loop, to latents. A fresh CPU generator per request, so
        a seed gives the same noise on every device. max_area = width*height keeps the
        output at exactly width × height (otherwise the pipeline rescales to 1024² at the
        requested aspect ratio). References ride along as appended tokens (index/offset)
        or in one strip image fed at its planned size (stitch); without them this is stock
        diffusers."""
        import torch

        pipe = self.pipe
        # A CPU generator per request: a seed gives the same noise on every rank too.
        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        image, appended = pipeline_inputs(request.image, request.references, inputs)
        with pipe.appending(appended):
            return pipe(
                image=image, prompt=request.prompt,
                width=request.width, height=request.height,
                max_area=request.width * request.height,
                num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
                generator=generator, output_type="latent", return_dict=False,
                callback_on_step_end=watch, _auto_resize=inputs.method != "stitch",
            )[0]

    def _result(self, image: Image.Image, elapsed: float, watch: StepWatch, inputs: InputPlan,
                loras: LoraSwitch | None, schedule: tuple[bool, ...]) -> EditResult:
        steps = watch.timer.step_seconds()
        cache = self.plan.step_cache
        # Turbo: scaled to a typical job's mix of computed and predicted steps.
        reference = cache.schedule(TYPICAL_STEPS) if cache is not None else ()
        return EditResult(image=image, elapsed=elapsed, denoise_seconds=sum(steps),
                          steps=len(steps),
                          step_seconds=steady_seconds(steps, schedule, reference),
                          input_sizes=inputs.sizes, reference_tokens=inputs.tokens, loras=loras)

    def _decode(self, latents, height: int, width: int) -> Image.Image:
        pipe = self.pipe
        latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
        latents = (latents / pipe.vae.config.scaling_factor) + pipe.vae.config.shift_factor
        decoded = pipe.vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(decoded, output_type="pil")[0]

    def close(self) -> None:
        """Drop the pipeline and release device memory."""
        self.pipe = None
        if self.loras is not None:
            self.loras.close()
        if self.group is not None:
            leave_group()
        free_memory(self.device)
