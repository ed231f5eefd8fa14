"""Whether the tensors on disk fit the models their configs describe, decided on the meta device.

Each model component is built from its config on the meta device (no memory), and its
safetensors headers become meta tensors of the recorded shapes and dtypes. The libraries'
own loading rules then say what is missing, unexpected or of the wrong shape, so the answer
is the one `from_pretrained` would give, without a weight being read: transformers models go
through transformers' loader itself (its key renamings and tied weights included),
diffusers models through diffusers' key fixes and its shape rule, a BFL single file through
diffusers' own single-file conversion. Tokenizers and schedulers hold no weights: they are
loaded for real (a few MB at most).
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Components loaded for real, being small and weightless.
WEIGHTLESS = ("Tokenizer", "Scheduler", "FeatureExtractor", "ImageProcessor")
#: At most this many tensor names are quoted per kind of problem.
QUOTED = 3


@dataclass
class Fit:
    """How a component's tensors fit its model: what the model lacks, what has the wrong
    shape, what the files hold beyond it, or why the model could not be built."""

    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    error: str | None = None

    def problems(self, name: str) -> list[str]:
        """Why `name` would not load (or would load with random values), one line each."""
        if self.error:
            return [f"{name}: {self.error}"]
        lines = []
        if self.missing:
            lines.append(f"{name}: {_quote(self.missing)} missing from its files "
                         "(they would hold random values)")
        if self.mismatched:
            lines.append(f"{name}: wrong shape for {_quote(self.mismatched)}")
        return lines

    def notes(self, name: str) -> list[str]:
        """What loads but is ignored."""
        if self.error or not self.unexpected:
            return []
        return [f"{name}: {_quote(self.unexpected)} in its files not used by the model (ignored)"]


def _quote(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:QUOTED])
    more = len(names) - QUOTED
    noun = "tensor" if len(names) == 1 else "tensors"
    return f"{len(names)} {noun} ({shown}{f', and {more} more' if more > 0 else ''})"


def meta_tensors(header: dict[str, Any]) -> dict[str, Any]:
    """The tensors a safetensors header describes, on the meta device (no data)."""
    import torch

    dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
              "BF16": torch.bfloat16, "F8_E4M3": torch.float8_e4m3fn,
              "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
              "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
    tensors = {}
    for name, entry in header.items():
        dtype = dtypes.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"tensor {name} has dtype {entry['dtype']}, which torch cannot load")
        tensors[name] = torch.empty(entry["shape"], dtype=dtype, device="meta")
    return tensors


def component_class(library: str, class_name: str) -> type:
    """The class model_index.json names; ValueError when it is not one diffusers or
    transformers has."""
    if library not in ("diffusers", "transformers"):
        raise ValueError(f"library {library!r} is not diffusers or transformers")
    cls = getattr(importlib.import_module(library), class_name, None)
    if not isinstance(cls, type):
        raise ValueError(f"{library} has no class {class_name}")
    return cls


def is_weightless(class_name: str) -> bool:
    """Tokenizers, schedulers and processors: no tensors to check."""
    return any(kind in class_name for kind in WEIGHTLESS)


def load_weightless(cls: type, folder: Path) -> str | None:
    """Load a tokenizer or scheduler from `folder` as the pipeline would; why not, or None."""
    try:
        with _quiet_libraries():
            cls.from_pretrained(folder)  # type: ignore[attr-defined]
    except Exception as exc:  # any failure is the answer
        return _reason(exc)
    return None


def fit_model(cls: type, folder: Path, tensors: dict[str, Any]) -> Fit:
    """How `tensors` (meta) fit the `cls` model that `folder`'s config describes."""
    from transformers import PreTrainedModel

    try:
        with _quiet_libraries():
            if issubclass(cls, PreTrainedModel):
                return _fit_transformers(cls, folder, tensors)
            return _fit_diffusers(cls, folder, tensors)
    except Exception as exc:  # a config the class cannot build is the answer
        return Fit(error=f"cannot build {cls.__name__} from its config: {_reason(exc)}")


def _fit_transformers(cls: type, folder: Path, tensors: dict[str, Any]) -> Fit:
    """transformers' own loader, fed meta tensors: its renamings and tied weights apply."""
    config = cls.config_class.from_pretrained(folder)  # type: ignore[attr-defined]
    _, info = cls.from_pretrained(  # type: ignore[attr-defined]
        None, config=config, state_dict=tensors, device_map="meta",
        output_loading_info=True, ignore_mismatched_sizes=True)
    return Fit(missing=sorted(info["missing_keys"]),
               mismatched=sorted(str(entry[0]) for entry in info["mismatched_keys"]),
               unexpected=sorted(info["unexpected_keys"]))


def _fit_diffusers(cls: type, folder: Path, tensors: dict[str, Any]) -> Fit:
    """What diffusers' from_pretrained checks: every key, each shape (it refuses a
    mismatch), after its fixes of old key names."""
    import torch

    config = cls.load_config(folder)  # type: ignore[attr-defined]
    with torch.device("meta"):
        model = cls.from_config(config)  # type: ignore[attr-defined]
    tensors = dict(tensors)
    model._fix_state_dict_keys_on_load(tensors)
    return compare(model.state_dict(), tensors, cls._keys_to_ignore_on_load_unexpected)


def compare(expected: dict[str, Any], found: dict[str, Any],
            ignored_unexpected: list[str] | None = None) -> Fit:
    """Keys and shapes of a model's state dict against the tensors found."""
    unexpected = [key for key in found if key not in expected
                  and not any(re.search(pattern, key) for pattern in ignored_unexpected or ())]
    return Fit(missing=sorted(key for key in expected if key not in found),
               mismatched=sorted(key for key, value in expected.items()
                                 if key in found and found[key].shape != value.shape),
               unexpected=sorted(unexpected))


def fit_single_file(tensors: dict[str, Any], base_transformer: Path) -> Fit:
    """How a single-file transformer fits the base's transformer config, converted from
    BFL's key layout by diffusers' own single-file mapping when it is in that layout."""
    import torch
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_model import (
        SINGLE_FILE_LOADABLE_CLASSES,
        _should_convert_state_dict_to_diffusers,
    )

    try:
        with _quiet_libraries():
            config = FluxTransformer2DModel.load_config(base_transformer)
            with torch.device("meta"):
                model = FluxTransformer2DModel.from_config(config)
    except Exception as exc:  # a config the class cannot build is the answer
        return Fit(error=f"cannot build the transformer from the base's config: {_reason(exc)}")
    expected = model.state_dict()
    if _should_convert_state_dict_to_diffusers(expected, tensors):
        convert = SINGLE_FILE_LOADABLE_CLASSES["FluxTransformer2DModel"]["checkpoint_mapping_fn"]
        try:
            tensors = convert(config=config, checkpoint=dict(tensors))
        except (KeyError, IndexError, RuntimeError, ValueError) as exc:
            return Fit(error=f"not a complete FLUX transformer in BFL's layout: {_reason(exc)}")
    return compare(expected, tensors)


def missing_pipeline_components(index: dict[str, Any],
                                pipeline: str = "FluxKontextPipeline") -> list[str]:
    """The components of `pipeline` (a diffusers class name) that model_index.json does not
    name."""
    import diffusers

    cls = getattr(diffusers, pipeline)
    expected, _ = cls._get_signature_keys(cls)
    optional = set(cls._optional_components)
    return sorted(name for name in set(expected) - optional
                  if not isinstance(index.get(name), list) or index[name][-1] is None)


def _reason(exc: BaseException) -> str:
    """An exception as one line (its first, with the type when the text alone is vague)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if len(text) < 20 else text


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """diffusers' and transformers' loaders log reports and progress bars meant for their
    own users; the check says what they found in its own words."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = [(module, module.get_verbosity(), module.is_progress_bar_enabled())
             for module in (diffusers_logging, transformers_logging)]
    for module, _, _ in saved:
        module.set_verbosity_error()
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, verbosity, bars in saved:
            module.set_verbosity(verbosity)
            if bars:
                module.enable_progress_bar()
