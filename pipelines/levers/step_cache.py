"""Turbo's step cache: whole transformer forwards are skipped and their output predicted.

After the exact steps (the first ~25 % of a job), only one step in `cache_interval` runs
the transformer; the other steps return a first-order Taylor extrapolation (TaylorSeer,
https://huggingface.co/papers/2503.06923) of the transformer's *output* from the last two
computed steps, in the timestep variable. A predicted step costs a few small tensor ops.

Hand-written (one diffusers ModelHook) because none of diffusers' caches fit: its TaylorSeer
hooks only the attention modules by default (a cached step still runs every MLP, ~half a
step, with ~12 GB of fp32 factors at 1024²); its "lite" mode and FirstBlockCache put hooks
inside the compiled blocks (graph breaks, and one hook state per block for dynamo to guard
on); TaylorSeer on the root module returns a bare tensor where FluxKontextPipeline indexes a
tuple; FirstBlockCache and MagCache read a value back to the host every step, and MagCache
needs magnitude ratios calibrated on the real Kontext weights, which we cannot do here.
This cache sits outside the compiled blocks (they stay fullgraph), never syncs with the
host, follows a fixed schedule (so a job's cost is known in advance) and keeps only the
output-sized factors (~2 MB at 1024²).
"""

from __future__ import annotations

from pipelines.levers.plan import StepCacheSpec

#: The hook's name in the transformer's diffusers HookRegistry.
HOOK_NAME = "kontext_step_cache"


def _hook_class():
    from diffusers.hooks import ModelHook

    class WholeForwardCache(ModelHook):
        """Runs or predicts each transformer call of a job, by a fixed schedule."""

        _is_stateful = True

        def __init__(self, spec: StepCacheSpec) -> None:
            super().__init__()
            self.spec = spec
            self.plan: tuple[bool, ...] = ()
            self.computed = 0
            self.reset_state(None)

        def reset_state(self, module):
            """Drop the job's tensors. The pipeline calls this at the end of every call
            (maybe_free_model_hooks); `computed` is kept for the caller until the next job."""
            self.call = 0
            self.points: list[tuple] = []  # (timestep, output) of the last computed calls
            return module

        def new_forward(self, module, *args, **kwargs):
            step, self.call = self.call, self.call + 1
            compute = step >= len(self.plan) or self.plan[step] or not self.points
            timestep = kwargs["timestep"]
            if compute:
                outputs = self.fn_ref.original_forward(*args, **kwargs)
                self.computed += 1
                sample = outputs[0] if isinstance(outputs, tuple) else outputs.sample
                self.points = [*self.points, (timestep, sample)][-(self.spec.max_order + 1):]
                return outputs
            sample = _extrapolate(self.points, timestep)
            return (sample,) if not kwargs.get("return_dict", True) else _output(sample)

    return WholeForwardCache


def _extrapolate(points: list[tuple], timestep):
    """Newton's divided differences through the computed (timestep, output) points, evaluated
    at `timestep`: all on the device, no host read."""
    import torch

    times = [t.to(torch.float32) for t, _ in points]
    coeffs = [sample.to(torch.float32) for _, sample in points]
    for level in range(1, len(points)):
        for i in range(len(points) - 1, level - 1, -1):
            coeffs[i] = (coeffs[i] - coeffs[i - 1]) / (times[i] - times[i - level])
    target = timestep.to(torch.float32)
    value = coeffs[-1]
    for i in range(len(points) - 2, -1, -1):
        value = coeffs[i] + (target - times[i]) * value
    return value.to(points[-1][1].dtype)


def _output(sample):
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    return Transformer2DModelOutput(sample=sample)


def enable_step_cache(transformer, spec: StepCacheSpec) -> None:
    """Register the cache on the transformer (outside its compiled blocks)."""
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    registry.register_hook(_hook_class()(spec), HOOK_NAME)


def _hook(transformer):
    registry = getattr(transformer, "_diffusers_hook", None)
    return registry.get_hook(HOOK_NAME) if registry is not None else None


def prepare_step_cache(transformer, steps: int) -> tuple[bool, ...]:
    """Start a job of `steps` steps: forget the last job and set this one's schedule.

    Returns the schedule (empty without a cache). Plain Python state outside any compiled
    graph: setting it per job neither recompiles nor leaks into the next job.
    """
    hook = _hook(transformer)
    if hook is None:
        return ()
    hook.reset_state(transformer)
    hook.computed = 0
    hook.plan = hook.spec.schedule(steps)
    return hook.plan

