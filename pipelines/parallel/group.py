"""A rank's side of a context-parallel group: torch.distributed, diffusers' parallelism on
the transformer, uneven sequences, and a cancel signal every rank agrees on.

Every collective must be entered by every rank the same number of times, or the group
hangs. Two things here keep the ranks in step:
  * the sequence switch: diffusers splits evenly (fast, compile-friendly) or, when a stream's
    length does not divide by the group, with its "anything" variants (uneven splits,
    exact); the choice is made per forward from the shapes, which all ranks share;
  * the agreed cancel: a job's cancel reaches each rank's process at a slightly different
    moment, so each read of it is a one-number all-reduce: all ranks stop at the same step.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Iterator
from unittest import mock

from pipelines.contract import CancelSignal, RunControl
from pipelines.errors import InvalidInput
from pipelines.parallel.check import check_group
from pipelines.parallel.options import ContextParallel

log = logging.getLogger(__name__)


def join_group(cp: ContextParallel, device: str) -> None:
    """Join the group's process group: gloo on CPU, NCCL on CUDA (blocks until all ranks
    have joined)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                            init_method=cp.init_method, rank=cp.rank, world_size=cp.degree,
                            timeout=datetime.timedelta(seconds=cp.timeout_seconds))
    log.info("joined the group as rank %d of %d (%s)", cp.rank, cp.degree, cp.init_method)


def leave_group() -> None:
    """Leave the process group (closing the engine)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def enable_context_parallel(transformer, cp: ContextParallel, device: str,
                            compiled: bool = False) -> None:
    """diffusers' context parallelism on `transformer` (its Flux plan: image and text
    streams split, the output gathered), with the uneven-length switch; `compiled`: the
    blocks will be compiled, and an uneven split runs them eagerly (dynamo cannot trace
    diffusers' uneven all-to-all)."""
    from diffusers import ContextParallelConfig

    check_group(cp.degree, cp.mode, transformer.config.num_attention_heads, device)
    config = ContextParallelConfig(**{f"{cp.mode}_degree": cp.degree})
    with _cpu_device_count(device):
        transformer.enable_parallelism(config=config)
    if not device.startswith("cuda"):
        _gather_unequal_on_gloo()
    switch = _SequenceSwitch(config, cp.degree, compiled)
    transformer.register_forward_pre_hook(switch, with_kwargs=True)
    transformer.register_forward_hook(switch.after)


@contextlib.contextmanager
def _cpu_device_count(device: str) -> Iterator[None]:
    """diffusers picks a rank's device as `rank % torch.accelerator.device_count()`, which is
    a division by zero on a machine without an accelerator: a CPU rank counts one device
    while parallelism is enabled (the device it picks is not used on CPU)."""
    import torch

    if device.startswith("cuda") or torch.accelerator.device_count() > 0:
        yield
        return
    with mock.patch.object(torch.accelerator, "device_count", return_value=1):
        yield


def _gather_unequal_on_gloo() -> None:
    """diffusers gathers an uneven split's output with `dist.all_gather` of unequal tensors,
    which NCCL does and gloo refuses ("invalid tensor size"): on CPU each rank's part is
    padded to the longest, gathered, and cropped back. By hand because diffusers offers no
    switch for it; process-wide, and only in a group rank's process."""
    from diffusers.hooks import context_parallel

    context_parallel._all_gather_anything = _all_gather_padded


def _all_gather_padded(tensor, dim: int, group):
    import torch
    import torch.distributed as dist
    from diffusers.models._modeling_parallel import gather_size_by_comm

    tensor = tensor.contiguous()
    sizes = gather_size_by_comm(tensor.shape[dim], group)
    longest = max(sizes)
    pad = [0, 0] * (tensor.dim() - dim - 1) + [0, longest - tensor.shape[dim]]
    padded = torch.nn.functional.pad(tensor, pad).contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part.narrow(dim, 0, size) for part, size in zip(parts, sizes,
                                                                        strict=True)], dim=dim)


class _SequenceSwitch:
    """Before each transformer forward: even splits when both streams divide by the group,
    diffusers' uneven ("anything") splits otherwise; InvalidInput when a stream is shorter
    than the group (a rank would get no token). With compiled blocks an uneven forward runs
    eagerly: the even one is the common case (1024² with a 1 MP reference, K = 2 or 4) and
    keeps its compiled graphs."""

    def __init__(self, config, degree: int, compiled: bool) -> None:
        self.config = config
        self.degree = degree
        self.compiled = compiled

    def __call__(self, _module, args, kwargs):
        lengths = [kwargs[name].shape[1] for name in ("hidden_states", "encoder_hidden_states")
                   if kwargs.get(name) is not None]
        if any(length < self.degree for length in lengths):
            raise InvalidInput(f"width/height: the job has {min(lengths)} tokens in a stream, "
                               f"fewer than the group's {self.degree} devices")
        uneven = any(length % self.degree for length in lengths)
        config = self.config
        if config.ring_degree > 1:
            config.ring_anything = uneven
        else:
            config.ulysses_anything = uneven
        if self.compiled and uneven:
            import torch

            torch.compiler.set_stance("force_eager")
        return args, kwargs

    def after(self, _module, _args, output):
        """After the forward: compiled blocks in use again."""
        if self.compiled:
            import torch

            torch.compiler.set_stance("default")
        return output


class AgreedCancel(CancelSignal):
    """A job's cancel as the group agrees on it: set on any rank → set on all, read at the
    same point on every rank (a one-number all-reduce per read)."""

    def __init__(self, local: CancelSignal) -> None:
        super().__init__()
        self.local = local
        self._agreed = False

    def set(self) -> None:
        """Cancel this rank's side (the others learn it at the next read)."""
        self.local.set()

    def is_set(self) -> bool:
        """Whether any rank's job was cancelled (a collective: every rank reads it)."""
        import torch
        import torch.distributed as dist

        if self._agreed:
            return True
        flag = torch.tensor([1 if self.local.is_set() else 0], dtype=torch.int32)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self._agreed = bool(flag.item())
        return self._agreed


def agreed(control: RunControl) -> RunControl:
    """`control` with its cancel agreed across the group."""
    return RunControl(cancel=AgreedCancel(control.cancel), emit=control.emit)
