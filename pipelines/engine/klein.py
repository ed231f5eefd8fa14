"""The FLUX.2 [klein] engine: diffusers' Flux2KleinPipeline behind load/warm-up/run/close.

Text to image (no input) and edits with 1 to 4 input images, every one a reference (the
pipeline resizes each to at most 1024² and crops it to multiples of 16). The released 4B
and 9B models are step-distilled: 4 steps, no classifier-free guidance.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from PIL import Image

from pipelines.contract import (
    KLEIN_4B,
    EditRequest,
    EditResult,
    EngineInfo,
    MovingAverage,
    RunControl,
    family,
    klein_input_size,
    tokens_for,
)
from pipelines.engine.devices import engine_failures, free_memory, pick_device
from pipelines.engine.options import EngineOptions
from pipelines.engine.request_checks import check_request_basics
from pipelines.engine.step_timer import StepWatch, steady_seconds
from pipelines.errors import Cancelled, InvalidInput, WeightsError
from pipelines.levers.apply import apply_plan
from pipelines.levers.plan import EnginePlan, detect_capabilities, plan_engine
from pipelines.memory.models import klein_memory
from pipelines.weights.source import HELP_POINTER, WeightsSource

log = logging.getLogger(__name__)

#: The pipeline refuses smaller inputs (Flux2ImageProcessor.check_image_input).
MIN_INPUT_SIDE = 64
MAX_INPUTS = 4
CALIBRATION_STEPS = 3
STEP_TIME_WEIGHT = 0.3


def klein_plan(plan: EnginePlan) -> EnginePlan:
    """The levers that hold for klein: the tier's dtype, attention, float8 linears and the
    regional compile. Refused with the reason: the step cache (turbo: fitted to FLUX.1's
    30-step schedule; klein runs 4 distilled steps) and the capped memory modes (their
    offload plan is written for Kontext's T5)."""
    if plan.tier == "turbo":
        raise InvalidInput("--tier turbo is not offered for klein: its step cache predicts "
                           "steps of a long schedule, and klein is distilled to 4 steps; use "
                           "--tier exact or --tier fp8")
    if plan.memory_mode != "full":
        raise InvalidInput(f"--memory-mode {plan.memory_mode} is not offered for klein (its "
                           "offload plan is Kontext's); klein 4B fits in about 13 GB: use "
                           "--memory-mode full")
    # Fused QKV and CUDA graphs are written against FLUX.1's attention and block layout.
    return replace(plan, fuse_qkv=False, cuda_graphs=None, step_cache=None)


class KleinEngine:
    """Owns one Flux2KleinPipeline on one device. Not thread-safe: one caller at a time."""

    def __init__(self, source: WeightsSource, options: EngineOptions | None = None,
                 name: str = KLEIN_4B) -> None:
        import torch

        options = options or EngineOptions()
        self.family = family(name)
        self.source = source
        self.options = options
        self.device = pick_device(options.device)
        self.plan = klein_plan(options.plan or plan_engine(
            options.tier, options.memory_mode, self.device, detect_capabilities(),
            max_autotune=options.max_autotune))
        if options.loras is not None:
            log.info("%s takes no LoRAs here: jobs with LoRAs are refused", self.family.name)
        #: Klein switches no LoRAs: the server's LoRA catalog is Kontext's (pipelines/loras).
        self.loras = None
        self.dtype = getattr(torch, self.plan.dtype)
        # On CUDA: refused here, with the numbers, when klein alone cannot fit.
        self.memory = klein_memory(source.location, self.plan)
        if self.memory is not None and self.memory.margin < 0:
            raise InvalidInput(f"{self.family.name} cannot fit on this GPU: "
                               f"{self.memory.describe()}")
        self._steady = MovingAverage(weight=STEP_TIME_WEIGHT)
        self.pipe = None
        self.info = EngineInfo(
            model=self.family.model + (" (tiny random demo checkpoint)" if options.demo else ""),
            device=self.device, dtype=self.plan.dtype, demo=options.demo, tier=self.plan.tier,
            family=self.family.name,
            extra={"weights": source.describe(), "licence": self.family.licence,
                   **({"memory_plan": self.memory.describe()} if self.memory else {}),
                   "levers": ", ".join(self.plan.levers()) or "none",
                   "notes": "; ".join(self.plan.notes) or "none"})

    def load(self) -> None:
        """Load the weights (offline) onto the device."""
        started = time.perf_counter()
        factory = self.options.pipeline_factory
        pipe = factory() if factory else load_klein(self.source, self.dtype)
        backend = apply_plan(pipe, self.plan)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.info.extra["attention"] = backend or "diffusers default"
        log.info("loaded %s from %s on %s in %.1fs", self.family.model, self.source.describe(),
                 self.device, time.perf_counter() - started)

    def warmup(self, calibrate: bool = True) -> None:
        """Real edits at the warm-up size (text to image, then one reference) so that no
        job pays first-call or compile costs, then a calibration edit whose steady steps
        seed the step-time estimate."""
        width, height = self.options.warmup_size
        steps = self.options.warmup_steps
        grey = Image.new("RGB", (width, height), (128, 128, 128))
        for image in (None, grey):
            self._warmup_edit(width, height, steps, image)
        if calibrate:
            result = self._warmup_edit(width, height, max(steps, CALIBRATION_STEPS), None)
            self._steady = MovingAverage(result.step_seconds, STEP_TIME_WEIGHT)

    def _warmup_edit(self, width: int, height: int, steps: int,
                     image: Image.Image | None) -> EditResult:
        request = EditRequest(prompt="warm-up edit", image=image, width=width, height=height,
                              steps=steps, guidance_scale=1.0, seed=0,
                              model=self.family.name)
        result = self._edit(request, RunControl())
        log.info("%s warm-up %dx%d (%d inputs), %d steps: %.2fs, %.3fs/step steady",
                 self.family.name, width, height, int(image is not None), steps,
                 result.elapsed, result.step_seconds)
        return result

    def steady_step_seconds(self) -> float | None:
        """Seconds per denoising step in steady state (None before warm-up)."""
        return self._steady.value

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        """Run one job. Raises Cancelled, InvalidInput, OutOfMemory or EngineFailure."""
        result = self._edit(request, control)
        self._steady.add(result.step_seconds)
        return result

    def _edit(self, request: EditRequest, control: RunControl) -> EditResult:
        import torch

        # 1. Check inputs.
        images = self._check(request)
        started = time.perf_counter()
        # 2. The watch times, reports and interrupts the steps.
        watch = StepWatch(self.pipe.transformer, control, request.steps,
                          cuda=self.device.startswith("cuda"))
        try:
            # (The pipeline's call runs under no_grad.)
            with engine_failures(self.device):
                # 3. Denoise and decode; a fresh CPU generator, so a seed gives the same
                #    noise on every device.
                generator = torch.Generator(device="cpu").manual_seed(request.seed)
                image = self.pipe(
                    image=list(images) or None, prompt=request.prompt,
                    width=request.width, height=request.height,
                    num_inference_steps=request.steps,
                    guidance_scale=request.guidance_scale, generator=generator,
                    callback_on_step_end=watch,
                ).images[0]
        finally:
            watch.close()
        # 4. A cancelled job's image is not an answer (diffusers decodes after an interrupt).
        if control.cancelled:
            raise Cancelled("job cancelled")
        steps = watch.timer.step_seconds()
        sizes = tuple(klein_input_size(*item.size) for item in images)
        return EditResult(image=image, elapsed=time.perf_counter() - started,
                          denoise_seconds=sum(steps), steps=len(steps),
                          step_seconds=steady_seconds(steps), input_sizes=sizes,
                          reference_tokens=sum(tokens_for(*size) for size in sizes))

    def _check(self, request: EditRequest) -> tuple[Image.Image, ...]:
        """The job's input images, after its sizes, steps and inputs are checked."""
        check_request_basics(self.pipe, request)
        if request.loras:
            raise InvalidInput(f"{self.family.name} takes no LoRAs on this server; LoRAs "
                               "are switched on the kontext-dev model only")
        images = ((request.image,) if request.image is not None else ()) + request.references
        if len(images) > MAX_INPUTS:
            raise InvalidInput(f"{self.family.name} takes at most {MAX_INPUTS} input images")
        for index, image in enumerate(images):
            if min(image.size) < MIN_INPUT_SIDE:
                raise InvalidInput(f"input[{index}] is {image.width}x{image.height}: "
                                   f"{self.family.name} needs inputs of at least "
                                   f"{MIN_INPUT_SIDE}x{MIN_INPUT_SIDE} pixels")
        return images

    def close(self) -> None:
        """Drop the pipeline and release device memory."""
        self.pipe = None
        free_memory(self.device)


def load_klein(source: WeightsSource, torch_dtype):
    """Load a Flux2KleinPipeline from a folder or a cached repo id offline (WeightsError)."""
    from diffusers import Flux2KleinPipeline

    if source.kind == "single_file":
        raise WeightsError(f"{source.location}: klein loads from a diffusers-layout folder "
                           f"or a cached repo id, not a single file. {HELP_POINTER}")
    try:
        pipe = Flux2KleinPipeline.from_pretrained(source.location, dtype=torch_dtype,
                                                  local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise WeightsError(f"Could not load klein weights from {source.describe()}: {exc}. "
                           f"{HELP_POINTER}") from exc
    for component in pipe.components.values():
        if hasattr(component, "eval"):
            component.eval()  # dropout off: seeded runs repeat
    return pipe
