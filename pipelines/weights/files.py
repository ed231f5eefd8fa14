"""Safetensors files as `kontext weights check` reads them: a header without its tensors,
the files and shards a component loads, and what a single-file transformer is."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from pipelines.weights.report import ComponentReport, WeightsReport

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


def add_file(comp: ComponentReport, path: Path, rel: str, report: WeightsReport) -> dict:
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


def weight_files(folder: Path, rel: str, report: WeightsReport) -> list[Path]:
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


def file_layout(keys: list[str]) -> str:
    """'bfl' (original single-file keys), 'diffusers', or 'unknown' (not a FLUX transformer)."""
    stripped = [k.removeprefix("model.diffusion_model.") for k in keys]
    if any(k.startswith("double_blocks.") for k in stripped):
        return "bfl"
    if any(k.startswith("transformer_blocks.") for k in stripped):
        return "diffusers"
    return "unknown"


def check_single_file(path: Path, report: WeightsReport) -> None:
    """Check a single .safetensors transformer file: tensors, dtypes, key layout, size."""
    comp = ComponentReport(path.name, "single-file transformer")
    report.components.append(comp)
    header = add_file(comp, path, path.name, report)
    if not header:
        return
    layout = file_layout(list(header))
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
