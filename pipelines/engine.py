"""The FLUX.1 Kontext [dev] engine: diffusers' FluxKontextPipeline behind load/warm-up/run/close."""

from __future__ import annotations

import gc
import logging
import time

from PIL import Image

from pipelines.engine_plan import EnginePlan, MemoryMode, Tier, detect_capabilities, plan_engine
from pipelines.errors import Cancelled, EngineFailure, InvalidInput, OutOfMemory
from pipelines.levers import apply_plan, prepare_step_cache, step_cache_context
from pipelines.shapes import ShapeCase, warmup_plan
from pipelines.types import EditRequest, EditResult, EngineInfo, RunControl
from pipelines.weights import WeightsSource, load_pipeline

log = logging.getLogger(__name__)

#: The pipeline packs 2×2 latent patches after 8× VAE downsampling.
SIZE_MULTIPLE = 16


def pick_device(requested: str) -> str:
    """Resolve "auto" to cuda when available; refuse "cuda" on a machine without it."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(f"--device {requested} was asked for but no CUDA device is available")
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
    ) -> None:
        import torch

        self.source = source
        self.device = pick_device(device)
        # The levers are decided here, before any weight is read, so that an unavailable
        # one (fp8 on CPU, say) fails at startup with InvalidInput saying what is missing.
        self.plan = plan or plan_engine(tier, memory_mode, self.device, detect_capabilities())
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
                   "levers": ", ".join(self.plan.levers()) or "none"},
        )

    def load(self) -> None:
        """Load the weights (offline) onto the device."""
        started = time.perf_counter()
        pipe = load_pipeline(self.source, self.dtype)
        apply_plan(pipe, self.plan)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        log.info("loaded %s on %s in %.1fs", self.source.describe(), self.device,
                 time.perf_counter() - started)

    def warmup(self) -> None:
        """Run real edits so the first request pays no lazy-initialisation or compile costs.

        Without compilation one edit at warmup_size is enough; with it, the shapes of
        pipelines/shapes.warmup_plan, so that no request compiles in steady state.
        """
        width, height = self.warmup_size
        steps = self.warmup_steps
        if self.plan.step_cache is not None:
            # Four steps trace every step-cache branch (first update, predict, later
            # update) into the compiled graphs, so that no job compiles a new variant.
            steps = max(steps, 4)
        cases = [ShapeCase(width, height, width, height)]
        if self.plan.compile is not None:
            plan = warmup_plan(self.plan.compile.dynamic)
            log.info("warm-up plan: %s", plan.reason)
            cases = list(plan.cases)
        for case in cases:
            self._warmup_edit(case, steps)

    def _warmup_edit(self, case: ShapeCase, steps: int) -> None:
        image = None
        if case.ref_width is not None and case.ref_height is not None:
            image = Image.new("RGB", (case.ref_width, case.ref_height), (128, 128, 128))
        request = EditRequest(
            prompt="warm-up edit", image=image, width=case.width, height=case.height,
            steps=steps, guidance_scale=2.5, seed=0,
        )
        result = self.run(request, RunControl())
        log.info("warm-up edit %dx%d (%d image tokens), %d steps: %.2fs", case.width,
                 case.height, case.image_tokens, steps, result.elapsed)

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
        try:
            with torch.inference_mode(), \
                    step_cache_context(pipe.transformer, self.plan.step_cache):
                latents = pipe(
                    image=request.image, prompt=request.prompt,
                    width=request.width, height=request.height,
                    max_area=request.width * request.height,
                    num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
                    generator=generator, output_type="latent", return_dict=False,
                    callback_on_step_end=on_step_end,
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

        elapsed = time.perf_counter() - started
        denoise = _denoise_seconds(step_times, started)
        return EditResult(image=image, elapsed=elapsed, denoise_seconds=denoise,
                          steps=len(step_times))

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
