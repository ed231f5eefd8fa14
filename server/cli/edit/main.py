"""`kontext edit`: check the config with the server's rules, run the edit, write the file."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from server.cli.edit.args import edit_config
from server.media.formats import FORMAT_OF_SUFFIX, ImageFormat

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


def _checked(args: argparse.Namespace) -> tuple[dict, bytes, Path, ImageFormat]:
    """The config (validated as the server validates it), the image bytes, the output."""
    from server.errors import ApiError
    from server.jobs.prepared import prepare
    from server.jobs.types import DEV_KONTEXT

    config = edit_config(args)
    try:
        prepare(DEV_KONTEXT, config)
    except ApiError as exc:
        raise Usage(exc.message) from exc
    if not args.image.is_file():
        raise Usage(f"image: no such file: {args.image}")
    out, fmt = output_path(args.image, args.out)
    return config, args.image.read_bytes(), out, fmt


def main_edit(args: argparse.Namespace) -> int:
    """`kontext edit`: the exit status (0 written, 1 failed, 2 usage, 130 interrupted)."""
    from pydantic import ValidationError

    from server.cli.settings_flags import batch_fields, settings_from_args
    from server.logs import configure_logging

    try:
        settings = settings_from_args(args, batch_fields())
        config, image, out, fmt = _checked(args)
    except ValidationError as exc:
        print(f"kontext edit: invalid setting:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except Usage as exc:
        print(f"kontext edit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, secrets=[args.token] if args.token else [])
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    return _run(args, settings, config, image, out, fmt)


def _run(args: argparse.Namespace, settings, config: dict, image: bytes, out: Path,
         fmt: ImageFormat) -> int:
    from pipelines.errors import EngineError
    from server.atomic_files import write_atomic
    from server.cli.edit.progress import StepProgress
    from server.cli.edit.remote import edit_remote
    from server.cli.edit.result import EditFailed

    progress = StepProgress()
    try:
        if args.local:
            from server.cli.edit.local import edit_local

            edited = edit_local(settings, config, image, fmt, progress)
        else:
            edited = edit_remote(args.server, args.token, config, image, args.image.name, fmt,
                                 progress, args.timeout)
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
    print(f"seed: {edited.job['config']['seed']}")
    print(f"wrote: {out}")
    return EXIT_OK
