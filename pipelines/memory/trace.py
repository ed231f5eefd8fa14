"""Peak activation memory of a module's forward, traced on the meta device (no compute).

Every tensor an aten op returns is counted from its creation until its storage is freed;
the peak of that sum is what the forward needs beyond its weights and inputs. Attention is
modelled as the GPU's fused kernels run it (flash, cuDNN, memory-efficient SDPA): the output
only, never the N² score matrix that a meta/math decomposition would materialise.
"""

from __future__ import annotations

from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


class _FusedAttention(TorchFunctionMode):
    """scaled_dot_product_attention as an allocation of its output alone."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        import torch

        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            query = kwargs["query"] if "query" in kwargs else args[0]
            value = kwargs["value"] if "value" in kwargs else args[2]
            return query.new_empty((*query.shape[:-1], value.shape[-1]))
        return func(*args, **kwargs)


class _LiveBytes(TorchDispatchMode):
    """Bytes of the storages that ops created and that are still alive; their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[object, int]] = {}
        self.now = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import torch
        from torch.multiprocessing.reductions import StorageWeakRef
        from torch.utils._pytree import tree_leaves

        out = func(*args, **(kwargs or {}))
        self._sweep()
        # Views and in-place results share an input's storage: nothing new was allocated.
        inputs = {StorageWeakRef(t.untyped_storage()).cdata
                  for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                ref = StorageWeakRef(tensor.untyped_storage())
                if ref.cdata not in self.live and ref.cdata not in inputs:
                    size = tensor.untyped_storage().nbytes()
                    self.live[ref.cdata] = (ref, size)
                    self.now += size
        self.peak = max(self.peak, self.now)
        return out

    def _sweep(self) -> None:
        for key, (ref, size) in list(self.live.items()):
            if ref.expired():
                del self.live[key]
                self.now -= size


def peak_activation_bytes(call) -> int:
    """Peak bytes of the tensors created while `call()` runs on meta tensors, without grad."""
    import torch

    tracker = _LiveBytes()
    with torch.no_grad(), _FusedAttention(), tracker:
        call()
    return tracker.peak
