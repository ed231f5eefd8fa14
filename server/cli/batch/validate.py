"""Turning raw rows into runnable rows: the config prepared as the job service prepares it,
the image paths, the output."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pipelines.contract import MAX_INPUT_IMAGES
from server.cli.batch.manifest import BadRow, RawRow, Row
from server.cli.photos import photo_shape, with_photo_size
from server.errors import ApiError
from server.jobs.prepared import prepare
from server.jobs.types import DEV_KONTEXT
from server.media.formats import FORMAT_OF_SUFFIX, ImageFormat, file_name


class RowError(Exception):
    """One row's problem, worded like the server's errors: `field: rule`."""


def _image_path(value: object, name: str, base_dir: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"{name}: must be a file path, got {value!r}")
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if not path.is_file():
        raise RowError(f"{name}: no such file: {path}")
    return path


def _image_paths(fields: dict[str, Any], base_dir: Path) -> tuple[Path, ...]:
    """The row's images: `image` is one path, or a list of 1–4 (the first is edited)."""
    if "images" in fields:
        raise RowError("images: unknown field; list several images in `image`")
    value = fields.get("image")
    if value is None:
        raise RowError("image: is required")
    if not isinstance(value, list):
        return (_image_path(value, "image", base_dir),)
    if not 1 <= len(value) <= MAX_INPUT_IMAGES:
        raise RowError(f"image: must list 1 to {MAX_INPUT_IMAGES} images (the one to edit, "
                       f"then references), got {len(value)}")
    return tuple(_image_path(item, f"image[{index}]", base_dir)
                 for index, item in enumerate(value))


def _output(fields: dict[str, Any], image: Path, out_dir: Path,
            default_fmt: ImageFormat) -> tuple[Path, ImageFormat]:
    value = fields.get("output")
    if value is None:
        return out_dir / file_name(default_fmt, image.stem), default_fmt
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"output: must be a file name, got {value!r}")
    name = PurePosixPath(value.strip().replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts:
        raise RowError(f"output: must be a name inside the output folder, got {value!r}")
    suffix = name.suffix.lower()
    if not suffix:
        return out_dir / file_name(default_fmt, str(name)), default_fmt
    if suffix not in FORMAT_OF_SUFFIX:
        raise RowError(f"output: extension must be .png, .jpg, .jpeg or .webp, got {value!r}")
    return out_dir / str(name), FORMAT_OF_SUFFIX[suffix]  # type: ignore[return-value]


def resolve_row(raw: RawRow, defaults: dict[str, Any], base_dir: Path, out_dir: Path,
                default_fmt: ImageFormat) -> Row | BadRow:
    """A Row when `raw` (over the CLI defaults) is valid, else a BadRow saying why."""
    fields = {**defaults, **raw.fields}
    out_dir = out_dir.resolve()
    if raw.error is not None:
        return BadRow(raw.number, raw.source, raw.error, fields)
    images: tuple[Path, ...] = ()
    output = None
    try:
        images = _image_paths(fields, base_dir)
        output, fmt = _output(fields, images[0], out_dir, default_fmt)
        if output in images:
            raise RowError(f"output: {output} is an input image itself; choose another "
                           "--out folder or `output` name")
        job_type = str(fields.get("type") or DEV_KONTEXT)
        config_fields = {k: v for k, v in fields.items() if k not in ("image", "output", "type")}
        # No size asked for: the photo's own shape (read from its header); klein edits take
        # their input's size themselves.
        sized = with_photo_size(config_fields, photo_shape(images[0])) \
            if job_type == DEV_KONTEXT else config_fields
        spec = prepare(job_type, sized)  # the job service's own validation
    except (RowError, ApiError) as exc:
        return BadRow(raw.number, raw.source, str(exc), fields, images, output)
    return Row(raw.number, raw.source, images, output, fmt, spec,
               seed_given="seed" in config_fields)


def resolve_rows(raws: list[RawRow], defaults: dict[str, Any], base_dir: Path, out_dir: Path,
                 default_fmt: ImageFormat = "png") -> list[Row | BadRow]:
    """Every row resolved; a second row writing the same output as an earlier one is bad."""
    resolved: list[Row | BadRow] = []
    owners: dict[Path, int] = {}
    for raw in raws:
        row = resolve_row(raw, defaults, base_dir, out_dir, default_fmt)
        if isinstance(row, Row):
            first = owners.setdefault(row.output.resolve(), row.number)
            if first != row.number:
                row = BadRow(row.number, row.source,
                             f"output: {row.output.name} is also the output of row {first}; "
                             "give this row its own `output` name", row.config.model_dump(),
                             row.images, row.output)
        resolved.append(row)
    return resolved
