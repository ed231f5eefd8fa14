"""CUDA graphs of whole transformer forwards, for repeated geometries.

A recorded graph replays one forward's kernels (the compiled blocks, attention, the fp8
GEMMs) with no Python and no launch gaps between them. It is keyed by the forward's
geometry: the shapes and dtypes of its tensor arguments and the values of the others; a
job's 30 steps share one key. Which geometries get a graph is CudaGraphSpec's policy
(pipelines/levers/plan.py): the warm-up's calibration geometry, then a geometry at the start
of its second job, up to `max_graphs`, none above the planned token count. Every other
forward runs the compiled blocks as they are.

Installed as a diffusers ModelHook on the transformer, inside the step cache: a predicted
step never reaches it, and the cache decides per step on the host with no read-back, so a
graph never has to stop for the host. Not with LoRA slots (the active-adapter count is
Python control flow a graph would freeze: the LoRA manager drops this lever).

What a replay means for callers (and what the CPU rehearsal reproduces with a stand-in that
re-runs the forward into the same buffers): the arguments are copied into the graph's
static inputs, and the outputs ARE the graph's static outputs, overwritten by the next
replay. The pipeline consumes each output before the next forward; the step cache copies
the ones it keeps.

The graphs share one memory pool: they never run concurrently and only their outputs
outlive a replay, so the pool holds about one forward's activations (the memory plan
counts `max_graphs` of them, an upper bound).
"""

from __future__ import annotations

import logging
from collections import Counter

from pipelines.levers.plan import CudaGraphSpec

log = logging.getLogger(__name__)

#: The hook's name in the transformer's diffusers HookRegistry.
HOOK_NAME = "kontext_cuda_graphs"


def signature(args: tuple, kwargs: dict):
    """The forward's geometry as a hashable key, or None when an argument cannot be keyed
    (that forward then runs without a graph)."""
    import torch

    def key(value):
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.shape), value.dtype, value.device)
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, tuple | list):
            return tuple(key(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((k, key(v)) for k, v in value.items()))
        raise TypeError(type(value).__name__)

    try:
        return key(args), key(kwargs)
    except TypeError:
        return None


class _Graph:
    """One recorded forward: static inputs, the graph (or the host stand-in), outputs."""

    def __init__(self, forward, args: tuple, kwargs: dict, cuda: bool, pool) -> None:
        import torch

        self.forward, self.cuda = forward, cuda
        self.args, self.kwargs = _static_copy(args), _static_copy(kwargs)
        self.graph = None
        if not cuda:  # the CPU rehearsal: the same buffers, refilled by re-running
            self.outputs = forward(*self.args, **self.kwargs)
            return
        # Lazy initialisation (cuBLAS workspaces, compiled kernels' first launch) must not
        # happen during capture: run the forward on a side stream first.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            forward(*self.args, **self.kwargs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.outputs = forward(*self.args, **self.kwargs)

    def replay(self, args: tuple, kwargs: dict):
        _refill((self.args, self.kwargs), (args, kwargs))
        if self.graph is not None:
            self.graph.replay()
        else:
            _refill(self.outputs, self.forward(*self.args, **self.kwargs))
        return self.outputs


def _static_copy(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple | list):
        return type(value)(_static_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _static_copy(v) for k, v in value.items()}
    return value


def _refill(static, new) -> None:
    """Copy `new`'s tensors into `static`'s, structure by structure."""
    import torch

    if isinstance(static, torch.Tensor):
        static.copy_(new)
    elif isinstance(static, tuple | list):
        for a, b in zip(static, new, strict=True):
            _refill(a, b)
    elif isinstance(static, dict):
        for name, value in static.items():
            _refill(value, new[name])


def _hook_class():
    from diffusers.hooks import ModelHook

    class GraphedForward(ModelHook):
        """Replays a recorded graph for the geometries the policy gave one."""

        def __init__(self, spec: CudaGraphSpec, cuda: bool) -> None:
            super().__init__()
            self.spec, self.cuda = spec, cuda
            self.graphs: dict = {}
            self.failed: set = set()  # geometries whose recording failed: never retried
            self.jobs = Counter()  # jobs that met each geometry
            self.job_keys: set = set()
            self.record_now, self.counting = False, False
            self.pool = None

        def new_forward(self, module, *args, **kwargs):
            key = signature(args, kwargs)
            graph = self.graphs.get(key)
            if graph is None and key is not None and self._wanted(key, kwargs):
                graph = self._record(key, args, kwargs)
            if graph is None:
                return self.fn_ref.original_forward(*args, **kwargs)
            return graph.replay(args, kwargs)

        def _wanted(self, key, kwargs) -> bool:
            if self.counting and key not in self.job_keys:
                self.job_keys.add(key)
                self.jobs[key] += 1
            tokens = kwargs["hidden_states"].shape[1] if "hidden_states" in kwargs else 0
            return (key not in self.failed and len(self.graphs) < self.spec.max_graphs
                    and 0 < tokens <= self.spec.max_image_tokens
                    and kwargs.get("return_dict") is False
                    and (self.record_now or self.jobs[key] >= 2))

        def _record(self, key, args, kwargs):
            try:
                if self.cuda and self.pool is None:
                    import torch

                    self.pool = torch.cuda.graph_pool_handle()
                graph = _Graph(self.fn_ref.original_forward, args, kwargs, self.cuda,
                               self.pool)
            except Exception as exc:  # a recording problem must not fail the job
                log.warning("CUDA graph not recorded for %d image tokens (%s); this "
                            "geometry runs without one", kwargs["hidden_states"].shape[1], exc)
                self.failed.add(key)
                return None
            self.graphs[key] = graph
            log.info("CUDA graph %d of %d recorded: %d image tokens", len(self.graphs),
                     self.spec.max_graphs, kwargs["hidden_states"].shape[1])
            return graph

    return GraphedForward


def enable_cuda_graphs(transformer, spec: CudaGraphSpec, cuda: bool) -> None:
    """Register the graph hook on the transformer (before the step cache, so that the cache
    wraps it). `cuda=False`: the CPU rehearsal's stand-in (same buffers, re-run)."""
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    registry.register_hook(_hook_class()(spec, cuda), HOOK_NAME)


def _hook(transformer):
    registry = getattr(transformer, "_diffusers_hook", None)
    return registry.get_hook(HOOK_NAME) if registry is not None else None


def start_job(transformer, counted: bool = True, record_now: bool = False) -> None:
    """A job (or warm-up edit) starts: `counted` jobs count towards a geometry's second job;
    `record_now` records this edit's geometry at once (the warm-up's calibration edit)."""
    hook = _hook(transformer)
    if hook is not None:
        hook.job_keys, hook.counting, hook.record_now = set(), counted, record_now


def recorded_graphs(transformer) -> int:
    """How many geometries have a graph (0 without the lever)."""
    hook = _hook(transformer)
    return 0 if hook is None else len(hook.graphs)
