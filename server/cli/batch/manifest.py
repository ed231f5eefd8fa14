"""Reading batch rows from a JSONL or CSV manifest or a folder, and the row types.

A row that cannot be read becomes a RawRow with an error; validation (validate.py) turns
rows into Row or BadRow. A bad row never stops the batch. A row's `image` is one path or,
for a multi-reference edit, a list of up to four (JSONL: a list; CSV: paths separated by
`|`): the first is edited, the others are references.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.jobs.prepared import JobSpec
from server.media.formats import FORMAT_OF_SUFFIX, ImageFormat
from server.wire.models import DevKontextConfig

#: CSV cells are text; these fields are converted so the strict wire model sees real types.
_INT_FIELDS = ("width", "height", "steps", "seed")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
#: Separates the paths of a multi-reference row's `image` cell in a CSV manifest.
CSV_PATH_SEPARATOR = "|"


class ManifestError(Exception):
    """The manifest as a whole cannot be read (missing file, unknown format)."""


@dataclass(frozen=True)
class RawRow:
    """One row as read: its number, where it came from, and its fields (or why unreadable)."""

    number: int
    source: str
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Row:
    """A valid row: existing images (the one edited first), its config prepared (validated
    once, seed resolved: server/jobs/prepared.py), an output path."""

    number: int
    source: str
    images: tuple[Path, ...]
    output: Path
    fmt: ImageFormat
    spec: JobSpec
    seed_given: bool

    @property
    def config(self) -> DevKontextConfig:
        """The validated config."""
        return self.spec.config  # type: ignore[return-value]

    @property
    def image(self) -> Path:
        """The image edited (the first)."""
        return self.images[0]


@dataclass(frozen=True)
class BadRow:
    """A row that cannot run, and why (`error` names the field and the rule)."""

    number: int
    source: str
    error: str
    fields: dict[str, Any]
    images: tuple[Path, ...] = ()
    output: Path | None = None


def read_manifest(path: Path) -> list[RawRow]:
    """The rows of a .jsonl or .csv manifest; raises ManifestError if it cannot be read."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise ManifestError(f"{path}: a manifest must be .jsonl or .csv, got {suffix!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc}") from exc
    rows = _jsonl_rows(text, path.name) if suffix == ".jsonl" else _csv_rows(text, path.name)
    return list(rows)


def _jsonl_rows(text: str, name: str) -> Iterator[RawRow]:
    number = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        number += 1
        source = f"{name} line {line_no}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RawRow(number, source, error=f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield RawRow(number, source, error="each line must be a JSON object")
            continue
        yield RawRow(number, source, value)


def _csv_rows(text: str, name: str) -> Iterator[RawRow]:
    reader = csv.DictReader(text.splitlines())
    number = 0
    for record in reader:
        source = f"{name} line {reader.line_num}"
        if not any((value or "").strip() for value in record.values() if isinstance(value, str)):
            continue
        number += 1
        if None in record:
            yield RawRow(number, source, error="the row has more cells than the header")
            continue
        cells = {key.strip(): value.strip() for key, value in record.items()
                 if key is not None and value is not None and value.strip()}
        yield RawRow(number, source, {key: _csv_value(key, value) for key, value in cells.items()})


def loras_text(text: str) -> list[object]:
    """`config.loras` from the CSV / --loras syntax: `styles/ghibli:0.8;relight` →
    `[{"name": "styles/ghibli", "scale": 0.8}, "relight"]`.

    Entries are separated by `;`; `:scale` after the last colon is optional (a name alone is
    sent as a name, scale 1). A suffix that is not a number stays part of the name.
    """
    entries: list[object] = []
    for part in (piece.strip() for piece in text.split(";")):
        name, colon, scale = part.rpartition(":")
        try:
            entries.append({"name": name.strip(), "scale": float(scale)} if colon else part)
        except ValueError:
            entries.append(part)
    return entries


def _csv_value(key: str, value: str) -> object:
    """A typed value for a CSV cell; left as text when it does not parse, so the
    wire model reports it with the server's wording."""
    if key == "loras":
        return loras_text(value)
    try:
        if key in _INT_FIELDS:
            return int(value)
        if key == "guidance_scale":
            return float(value)
    except ValueError:
        return value
    if key == "progressive" and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    if key == "image" and CSV_PATH_SEPARATOR in value:
        return [path.strip() for path in value.split(CSV_PATH_SEPARATOR)]
    return value


def folder_rows(directory: Path) -> list[RawRow]:
    """One row per PNG/JPEG/WebP file in `directory` (sorted by name; not recursive)."""
    if not directory.is_dir():
        raise ManifestError(f"{directory}: not a folder")
    # Hidden files are skipped: they include temp files of a batch writing into this folder.
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in FORMAT_OF_SUFFIX)
    # Image paths are relative to the folder, as the caller resolves them against it.
    return [RawRow(number, str(path), {"image": path.name})
            for number, path in enumerate(files, start=1)]
