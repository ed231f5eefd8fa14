"""`kontext edit`: check the config with the server's rules, run the edit, write the file."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from server.cli.edit.args import edit_config, edit_type
from server.media.formats import FORMAT_OF_SUFFIX, ImageFormat

if TYPE_CHECKING:
    from server.cli.photos import Photo
    from server.media.decode import ImageLimits

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Usage(Exception):
    """A bad argument, worded like the server's errors: `field: rule`."""


def output_path(image: Path, out: Path | None) -> tuple[Path, ImageFormat]:
    """Where to write and in which format (from the extension)."""
    if out is None:
        return Path.cwd() / f"{image.stem}-edited.png", "png"
    fmt = FORMAT_OF_SUFFIX.get(out.suffix.lower())
    if fmt is None:
        raise Usage(f"out: extension must be .png, .jpg, .jpeg or .webp, got {str(out)!r}")
    return out, fmt  # type: ignore[return-value]


def _checked(args: argparse.Namespace, limits: ImageLimits
             ) -> tuple[dict, Photo, Path, ImageFormat]:
    """The config (validated as the server validates it; of the photo's shape when it asks
    for no size), the photo as it will be sent (shrunk if too large), the output."""
    from server.cli.photos import read_photo, with_photo_size
    from server.errors import ApiError
    from server.jobs.prepared import prepare
    from server.jobs.types import DEV_KONTEXT

    config = edit_config(args)
    try:
        prepare(edit_type(args), config)
    except ApiError as exc:
        raise Usage(exc.message) from exc
    if not args.image.is_file():
        raise Usage(f"image: no such file: {args.image}")
    out, fmt = output_path(args.image, args.out)
    photo = read_photo(args.image, limits)
    if edit_type(args) != DEV_KONTEXT:  # klein edits default to the input's own size
        return config, photo, out, fmt
    return with_photo_size(config, photo.shape), photo, out, fmt


def _size_of(config: dict, output: bytes) -> str:
    """WIDTHxHEIGHT of the result: the config's, or the image's own (a klein edit without a
    size takes its input's)."""
    if "width" in config and "height" in config:
        return f"{config['width']}x{config['height']}"
    import io

    from PIL import Image

    with Image.open(io.BytesIO(output)) as image:
        return f"{image.width}x{image.height}"


def _serving_its_model(args: argparse.Namespace, settings):
    """With --local, the engine serves the model the edit's job type runs on when --models
    leaves it out (so `--local --demo --model klein-4b` loads klein alone)."""
    from server.jobs.types import JOB_TYPES

    job_type = JOB_TYPES.get(edit_type(args))
    model = job_type.model if job_type else None
    model = "klein-4b" if model == "klein" else model
    if not args.local or model is None or model in settings.models \
            or "all" in settings.models:
        return settings
    return settings.model_copy(update={"models": [model]})


def main_edit(args: argparse.Namespace) -> int:
    """`kontext edit`: the exit status (0 written, 1 failed, 2 usage, 130 interrupted)."""

    from server.cli.settings_flags import (
        SETTINGS_ERRORS,
        batch_fields,
        settings_from_args,
        settings_problem,
    )
    from server.logs import configure_logging
    from server.media.decode import ImageLimits

    try:
        settings = _serving_its_model(args, settings_from_args(args, batch_fields()))
        config, photo, out, fmt = _checked(args, ImageLimits(max_bytes=settings.max_input_bytes))
    except SETTINGS_ERRORS as exc:
        print(f"kontext edit: {settings_problem(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Usage as exc:
        print(f"kontext edit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, secrets=[args.token] if args.token else [])
    logging.getLogger("httpx2").setLevel(max(logging.WARNING, logging.getLogger().level))
    if photo.note:
        print(f"kontext edit: {photo.note}", file=sys.stderr)
    return _run(args, settings, config, photo, out, fmt)


def _run(args: argparse.Namespace, settings, config: dict, photo: Photo, out: Path,
         fmt: ImageFormat) -> int:
    from pipelines.errors import EngineError
    from server.atomic_files import write_atomic
    from server.cli.edit.progress import StepProgress
    from server.cli.edit.remote import edit_remote
    from server.cli.edit.result import EditFailed, SetupFailed

    progress = StepProgress()
    try:
        if args.local:
            from server.cli.edit.local import edit_local

            edited = edit_local(settings, config, photo.data, fmt, progress, edit_type(args))
        else:
            edited = edit_remote(args.server, args.token, config, photo.data, photo.name, fmt,
                                 progress, args.timeout, edit_type(args))
    except SetupFailed as exc:
        progress.close()
        print(f"kontext edit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (EditFailed, EngineError) as exc:
        progress.close()
        print(f"kontext edit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        progress.close()
        print("kontext edit: interrupted; the edit was cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.close()
    write_atomic(out, edited.output)
    done = edited.job["config"]
    print(f"seed: {done['seed']}")
    print(f"wrote: {out} ({_size_of(done, edited.output)})")
    if edited.job.get("notice"):  # e.g. a demo server's: its images are noise
        print(f"notice: {edited.job['notice']}")
    return EXIT_OK
