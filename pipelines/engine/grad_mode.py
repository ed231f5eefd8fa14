"""Autograd off for inference: inference_mode, with a tested no_grad fallback.

inference_mode is the faster of the two, but tensor subclasses created outside it (torchao's
float8 weights, made at load time) have a history of failing inside it with "Cannot set
version_counter for inference tensor" (pytorch/pytorch#164872, pytorch/ao#3487). An engine
that meets that error switches to no_grad for good and reruns the job.
"""

from __future__ import annotations

from typing import Literal

GradMode = Literal["inference_mode", "no_grad"]

#: Fragments of the errors that inference_mode raises for tensor subclasses made outside it.
INFERENCE_MODE_ERRORS = ("inference tensor", "Inference tensors")


def grad_context(mode: GradMode):
    """The context that turns autograd off in `mode`."""
    import torch

    return torch.inference_mode() if mode == "inference_mode" else torch.no_grad()


def is_inference_mode_failure(exc: BaseException, mode: GradMode) -> bool:
    """Whether `exc` is inference_mode's tensor-subclass failure (so no_grad would work)."""
    return mode == "inference_mode" and isinstance(exc, RuntimeError) \
        and any(fragment in str(exc) for fragment in INFERENCE_MODE_ERRORS)
