"""Say what a weights folder, cached repo or single file holds and whether `kontext serve` loads it.

Only safetensors headers are read, never a tensor's data: every model component is built
from its config on the meta device and its tensors' names and shapes are matched against
it by the libraries' own loading rules (pipelines/weights/fit.py), so "OK" means serve
would load it, and checking the 58 GB real checkpoint takes seconds and no memory. Nothing
is ever downloaded: a repo id is looked up in the local Hugging Face cache only.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.errors import WeightsError
from pipelines.weights.files import (
    add_file,
    check_single_file,
    read_safetensors_header,
    weight_files,
)
from pipelines.weights.fit import (
    component_class,
    fit_model,
    fit_single_file,
    is_weightless,
    load_weightless,
    meta_tensors,
    missing_pipeline_components,
)
from pipelines.weights.report import ComponentReport, WeightsReport
from pipelines.weights.source import DEFAULT_REPO, HELP_POINTER
from pipelines.weights.tiny import is_tiny_checkpoint

#: The real FLUX.1-Kontext-dev transformer config (identical to FLUX.1-dev's).
KONTEXT_DEV_TRANSFORMER = {
    "attention_head_dim": 128,
    "axes_dims_rope": [16, 56, 56],
    "guidance_embeds": True,
    "in_channels": 64,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "patch_size": 1,
    "pooled_projection_dim": 768,
}
def _check_component(root: Path, name: str, spec: list, report: WeightsReport,
                     check_tensors: bool) -> ComponentReport | None:
    """Check one component folder of a diffusers-layout checkpoint: its config, its files'
    headers, and (on the meta device) that its tensors fit the model its config describes."""
    folder, class_name = root / name, str(spec[-1])
    if not folder.is_dir():
        report.missing.append(f"component folder {name}/ ({class_name})")
        return None
    comp = ComponentReport(name, class_name)
    comp.files += [f"{name}/{p.name}" for p in folder.iterdir() if p.suffix != ".safetensors"]
    configs = ["tokenizer_config.json", "tokenizer.json", "spiece.model", "vocab.json"]
    if not class_name.endswith("Tokenizer") and "TokenizerFast" not in class_name:
        configs = ["scheduler_config.json"] if "Scheduler" in class_name else ["config.json"]
    has_config = any((folder / c).is_file() for c in configs)
    if not has_config:
        report.missing.append(f"{name}/{configs[0]}")
    try:
        cls = component_class(str(spec[0]), class_name)
    except ValueError as exc:
        report.problems.append(f"{name}: {exc}")
        return comp
    if is_weightless(class_name):
        error = load_weightless(cls, folder) if has_config else None
        if error:
            report.problems.append(f"{name}: its {class_name} does not load: {error}")
        return comp
    if check_tensors:
        _check_tensors(folder, name, cls, comp, report, has_config)
    return comp


def _check_tensors(folder: Path, name: str, cls: type, comp: ComponentReport,
                   report: WeightsReport, has_config: bool) -> None:
    """Read the component's headers and match its tensors against its model."""
    corrupt_before = len(report.corrupt)
    weights = weight_files(folder, name, report)
    header: dict = {}
    for path in weights:
        header.update(add_file(comp, path, f"{name}/{path.name}", report))
    if not weights:
        if list(folder.glob("*.bin")):
            report.notes.append(f"{name}: only .bin files: its tensors were not checked")
        else:
            report.missing.append(f"weight files in {name}/ (no *.safetensors)")
        return
    if len(report.corrupt) > corrupt_before or not has_config:
        return  # already reported; nothing sound to match
    try:
        fit = fit_model(cls, folder, meta_tensors(header))
    except ValueError as exc:
        report.problems.append(f"{name}: {exc}")
        return
    report.problems += fit.problems(name)
    report.notes += fit.notes(name)


def _compare_transformer(root: Path, report: WeightsReport) -> None:
    """Set matches_kontext_dev from transformer/config.json and note every difference."""
    try:
        config = json.loads((root / "transformer" / "config.json").read_text())
    except (OSError, ValueError):
        return
    # An absent key takes the class default, which is the real geometry.
    diffs = [
        f"{k}={config.get(k)!r} (real {v!r})"
        for k, v in KONTEXT_DEV_TRANSFORMER.items()
        if k in config and config[k] != v
    ]
    report.matches_kontext_dev = not diffs
    if diffs:
        report.notes.append(
            "transformer is NOT the real FLUX.1-Kontext-dev geometry: " + ", ".join(diffs)
        )
    else:
        report.notes.append("transformer config matches FLUX.1-Kontext-dev (same as FLUX.1-dev)")


#: The diffusers pipeline class each model family loads with.
PIPELINES = {"kontext-dev": "FluxKontextPipeline", "klein-4b": "Flux2KleinPipeline",
             "klein-9b": "Flux2KleinPipeline"}


def _check_folder(root: Path, report: WeightsReport, skip_weights: tuple[str, ...] = (),
                  model: str = "kontext-dev") -> None:
    """Check a diffusers-layout folder: model_index.json, then every component it lists."""
    try:
        index = json.loads((root / "model_index.json").read_text())
    except FileNotFoundError:
        report.missing.append(f"model_index.json in {root} (not a diffusers-layout folder)")
        return
    except (OSError, ValueError) as exc:
        report.corrupt.append(f"model_index.json: {exc}")
        return
    pipeline = PIPELINES[model]
    if model != "kontext-dev" and index.get("_class_name") != pipeline:
        # Another family's folder cannot load as this one: refused, not noted.
        report.problems.append(f"pipeline class is {index.get('_class_name')}, not "
                               f"{pipeline}: these are not {model} weights")
        return
    # A base only lends its other components, so e.g. FLUX.1-dev's FluxPipeline is fine there.
    if index.get("_class_name") != pipeline and "transformer" not in skip_weights:
        report.notes.append(
            f"pipeline class is {index.get('_class_name')}, not "
            "FluxKontextPipeline: edits may not follow the reference image"
        )
    absent = missing_pipeline_components(index, pipeline)
    if absent:
        report.missing.append(f"{', '.join(absent)} in model_index.json (a {pipeline} "
                              "needs every one)")
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[-1] is None:
            continue
        comp = _check_component(root, name, spec, report, name not in skip_weights)
        if comp is not None:
            report.components.append(comp)
    report.is_tiny = is_tiny_checkpoint(root)
    if model == "kontext-dev":
        _compare_transformer(root, report)


def _resolve_repo(repo: str, report: WeightsReport) -> Path | None:
    """The snapshot folder of `repo` in the local HF cache, or None (reason in report)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except LocalEntryNotFoundError:
        reason = "not in the local Hugging Face cache"
    except (OSError, ValueError) as exc:
        reason = f"could not be read from the local Hugging Face cache ({exc})"
    report.problems.append(
        f"{repo} {reason}; the server never downloads: run `hf download {repo}` first "
        "(see weights/README.md)"
    )
    return None


def _check_location(location: str, report: WeightsReport, skip: tuple[str, ...] = (),
                    model: str = "kontext-dev") -> None:
    """Fill `report` for a folder, single file or cached repo id at `location`."""
    path = Path(location).expanduser()
    if path.is_dir():
        report.kind, report.path = "folder", str(path)
        _check_folder(path, report, skip, model)
    elif path.is_file():
        report.kind, report.path = "single_file", str(path)
        if model != "kontext-dev":
            report.problems.append(f"{model} loads from a diffusers-layout folder or a "
                                   "cached repo id, not a single file")
        elif path.suffix != ".safetensors":
            report.problems.append(f"{path.name} is not a .safetensors file")
        else:
            check_single_file(path, report)
    elif location.count("/") == 1 and not location.startswith((".", "/", "~")):
        report.kind = "repo"
        snapshot = _resolve_repo(location, report)
        if snapshot is not None:
            report.path = str(snapshot)
            _check_folder(snapshot, report, skip, model)
    else:
        report.problems.append(f"{location} does not exist (no such file or folder)")


def check_weights(location: str, base: str | None = None,
                  model: str = "kontext-dev") -> WeightsReport:
    """Report what `location` holds as weights of family `model` (kontext-dev, klein-4b,
    klein-9b); for a Kontext single file also check `base` (other components)."""
    report = WeightsReport(location)
    report.model = model
    _check_location(location, report, model=model)
    if report.kind == "single_file" and model == "kontext-dev":
        report.base = WeightsReport(base or DEFAULT_REPO)
        # The base's transformer weights are not loaded, but its config.json is.
        _check_location(base or DEFAULT_REPO, report.base, skip=("transformer",))
        if report.base.kind == "single_file":
            report.base.problems.append("the base must be a diffusers folder or cached repo id")
        elif report.base.path and not report.corrupt and not report.problems:
            _fit_single_file(Path(report.path or location), Path(report.base.path), report)
    return report


def _fit_single_file(path: Path, base: Path, report: WeightsReport) -> None:
    """Match the file's tensors against the base's transformer config, on the meta device."""
    if not (base / "transformer" / "config.json").is_file():
        return  # the base's report names it missing
    try:
        tensors = meta_tensors(read_safetensors_header(path))
    except ValueError as exc:
        report.problems.append(f"{path.name}: {exc}")
        return
    fit = fit_single_file(tensors, base / "transformer")
    report.problems += fit.problems(path.name)
    report.notes += fit.notes(path.name)


def require_loadable(location: str, base: str | None = None,
                     model: str = "kontext-dev") -> None:
    """Raise WeightsError naming every reason `location` would not load as family `model`
    (what `kontext weights check` says), before any weight is read."""
    report = check_weights(location, base, model)
    if not report.loadable:
        raise WeightsError(f"{location} cannot be loaded: {'; '.join(report.reasons)}. "
                           f"{HELP_POINTER}")
