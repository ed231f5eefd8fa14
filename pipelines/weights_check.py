"""Say what a weights folder, cached repo or single file holds and whether `kontext serve` loads it.

Only safetensors headers are read, never a tensor's data: every model component is built
from its config on the meta device and its tensors' names and shapes are matched against
it by the libraries' own loading rules (pipelines/weights_fit.py), so "OK" means serve
would load it, and checking the 58 GB real checkpoint takes seconds and no memory. Nothing
is ever downloaded: a repo id is looked up in the local Hugging Face cache only.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from pipelines.errors import WeightsError
from pipelines.tiny_checkpoint import is_tiny_checkpoint
from pipelines.weights import DEFAULT_REPO, HELP_POINTER
from pipelines.weights_fit import (
    component_class,
    fit_model,
    fit_single_file,
    is_weightless,
    load_weightless,
    meta_tensors,
    missing_pipeline_components,
)
from pipelines.weights_report import ComponentReport, WeightsReport

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
KONTEXT_DEV_TRANSFORMER_PARAMS = 11_901_408_320
#: BFL's published single files: name -> (bytes, sha256).
PUBLISHED_FILES = {
    "flux1-kontext-dev.safetensors": (
        23_802_947_360,
        "843a26dc765d3105dba081c30bce7b14c65b0988f9e8d14e9fbc8856a6deebd5",
    ),
    "ae.safetensors": (
        335_304_388,
        "afc8e28272cd15db3919bacdb6918ce9c1ed22e96cb12c4d5ed0fba823529e38",
    ),
}
_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors_header(path: Path) -> dict:
    """Parse a safetensors header; raise ValueError if unreadable or the file is truncated."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{size} bytes, too short for a safetensors header")
        (length,) = struct.unpack("<Q", raw)
        if length > min(size - 8, _MAX_HEADER):
            raise ValueError(f"header length {length} exceeds the file ({size} bytes)")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"header is not valid JSON ({exc})") from exc
    header.pop("__metadata__", None)
    data_end = max((t["data_offsets"][1] for t in header.values()), default=0)
    if 8 + length + data_end > size:
        raise ValueError(f"truncated: header needs {8 + length + data_end} bytes, file has {size}")
    return header


def _add_file(comp: ComponentReport, path: Path, rel: str, report: WeightsReport) -> dict:
    """Add one safetensors file to `comp`; record it as corrupt (and return {}) if unreadable."""
    comp.files.append(rel)
    comp.total_bytes += path.stat().st_size
    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        report.corrupt.append(f"{rel}: {exc}")
        return {}
    comp.dtypes |= {t["dtype"] for t in header.values()}
    comp.parameters += sum(math.prod(t["shape"]) for t in header.values())
    return header


def _weight_files(folder: Path, rel: str, report: WeightsReport) -> list[Path]:
    """The safetensors files a component loads, checking shards named by any index file."""
    index = next(iter(sorted(folder.glob("*.safetensors.index.json"))), None)
    if index is None:
        files = sorted(folder.glob("*.safetensors"))
        # A dangling symlink: a cached snapshot whose download never finished.
        report.missing += [f"{rel}/{p.name} (broken link)" for p in files if not p.is_file()]
        return [p for p in files if p.is_file()]
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        report.corrupt.append(f"{rel}/{index.name}: unreadable shard index ({exc})")
        return []
    absent = [s for s in shards if not (folder / s).is_file()]
    report.missing += [f"{rel}/{s} (shard listed in {index.name})" for s in absent]
    return [folder / s for s in shards if s not in absent]


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
    weights = _weight_files(folder, name, report)
    header: dict = {}
    for path in weights:
        header.update(_add_file(comp, path, f"{name}/{path.name}", report))
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


def _check_folder(root: Path, report: WeightsReport, skip_weights: tuple[str, ...] = ()) -> None:
    """Check a diffusers-layout folder: model_index.json, then every component it lists."""
    try:
        index = json.loads((root / "model_index.json").read_text())
    except FileNotFoundError:
        report.missing.append(f"model_index.json in {root} (not a diffusers-layout folder)")
        return
    except (OSError, ValueError) as exc:
        report.corrupt.append(f"model_index.json: {exc}")
        return
    # A base only lends its other components, so e.g. FLUX.1-dev's FluxPipeline is fine there.
    if index.get("_class_name") != "FluxKontextPipeline" and "transformer" not in skip_weights:
        report.notes.append(
            f"pipeline class is {index.get('_class_name')}, not "
            "FluxKontextPipeline: edits may not follow the reference image"
        )
    absent = missing_pipeline_components(index)
    if absent:
        report.missing.append(f"{', '.join(absent)} in model_index.json (a FluxKontextPipeline "
                              "needs every one)")
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[-1] is None:
            continue
        comp = _check_component(root, name, spec, report, name not in skip_weights)
        if comp is not None:
            report.components.append(comp)
    report.is_tiny = is_tiny_checkpoint(root)
    _compare_transformer(root, report)


def _file_layout(keys: list[str]) -> str:
    """'bfl' (original single-file keys), 'diffusers', or 'unknown' (not a FLUX transformer)."""
    stripped = [k.removeprefix("model.diffusion_model.") for k in keys]
    if any(k.startswith("double_blocks.") for k in stripped):
        return "bfl"
    if any(k.startswith("transformer_blocks.") for k in stripped):
        return "diffusers"
    return "unknown"


def _check_single_file(path: Path, report: WeightsReport) -> None:
    """Check a single .safetensors transformer file: tensors, dtypes, key layout, size."""
    comp = ComponentReport(path.name, "single-file transformer")
    report.components.append(comp)
    header = _add_file(comp, path, path.name, report)
    if not header:
        return
    layout = _file_layout(list(header))
    report.notes.append(f"{len(header)} tensors, key layout: {layout}")
    if layout == "unknown":
        report.problems.append(
            f"{path.name} does not hold a FLUX transformer "
            "(no double_blocks.* or transformer_blocks.* keys)"
        )
    report.matches_kontext_dev = comp.parameters == KONTEXT_DEV_TRANSFORMER_PARAMS
    real = f"{KONTEXT_DEV_TRANSFORMER_PARAMS:,}"
    verdict = "matches" if report.matches_kontext_dev else f"is not {real}, the count of"
    report.notes.append(f"parameter count {verdict} the FLUX.1-Kontext-dev transformer")
    for name, (size, sha256) in PUBLISHED_FILES.items():
        if comp.total_bytes == size:
            report.notes.append(
                f"size equals the published {name}; verify with `sha256sum {path}` against {sha256}"
            )
    if comp.total_bytes == PUBLISHED_FILES["ae.safetensors"][0]:
        report.problems.append("this is the VAE (ae.safetensors), not the transformer")


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


def _check_location(location: str, report: WeightsReport, skip: tuple[str, ...] = ()) -> None:
    """Fill `report` for a folder, single file or cached repo id at `location`."""
    path = Path(location).expanduser()
    if path.is_dir():
        report.kind, report.path = "folder", str(path)
        _check_folder(path, report, skip)
    elif path.is_file():
        report.kind, report.path = "single_file", str(path)
        if path.suffix != ".safetensors":
            report.problems.append(f"{path.name} is not a .safetensors file")
        else:
            _check_single_file(path, report)
    elif location.count("/") == 1 and not location.startswith((".", "/", "~")):
        report.kind = "repo"
        snapshot = _resolve_repo(location, report)
        if snapshot is not None:
            report.path = str(snapshot)
            _check_folder(snapshot, report, skip)
    else:
        report.problems.append(f"{location} does not exist (no such file or folder)")


def check_weights(location: str, base: str | None = None) -> WeightsReport:
    """Report what `location` holds; for a single file also check `base` (other components)."""
    report = WeightsReport(location)
    _check_location(location, report)
    if report.kind == "single_file":
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


def require_loadable(location: str, base: str | None = None) -> None:
    """Raise WeightsError naming every reason `location` would not load (what `kontext
    weights check` says), before any weight is read."""
    report = check_weights(location, base)
    if not report.loadable:
        raise WeightsError(f"{location} cannot be loaded: {'; '.join(report.reasons)}. "
                           f"{HELP_POINTER}")
