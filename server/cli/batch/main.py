"""`kontext batch`: read the rows, skip those already done, run the rest, write the report."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from server.atomic_files import remove_stale_temps
from server.cli.batch.args import config_defaults
from server.cli.batch.manifest import (
    BadRow,
    ManifestError,
    RawRow,
    Row,
    folder_rows,
    read_manifest,
)
from server.cli.batch.outputs import output_is_valid
from server.cli.batch.progress import Progress
from server.cli.batch.report import Report, row_line, summary
from server.cli.batch.stop import StopRequest
from server.cli.batch.validate import resolve_rows
from server.cli.settings_flags import (
    SETTINGS_ERRORS,
    batch_fields,
    settings_from_args,
    settings_problem,
)
from server.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130


def _raw_rows(args: argparse.Namespace) -> tuple[list[RawRow], Path]:
    """The raw rows and the folder relative image paths are read from."""
    if args.images is not None:
        if not args.prompt:
            raise ManifestError("--images needs --prompt (the instruction for every image)")
        return folder_rows(args.images), args.images
    return read_manifest(args.manifest), args.manifest.parent


def _skipped_config(row: Row, report: Report) -> dict[str, Any]:
    """The config an existing output was made with: from the previous report when it has it."""
    previous = report.previous.get(str(row.output))
    if previous is not None:
        return previous
    config = row.config.model_dump()
    if not row.seed_given:
        config["seed"] = None  # made by an earlier run whose random seed is not on record
    return config


def _triage(rows: list[Row | BadRow], report: Report) -> list[Row]:
    """Report bad rows and rows already done; the rows left to run."""
    pending: list[Row] = []
    for row in rows:
        if isinstance(row, BadRow):
            report.write(row_line(row, "failed", error=row.error))
            print(f"failed: row {row.number} ({row.source}): {row.error}", file=sys.stderr)
        elif output_is_valid(row.output, row.config.width, row.config.height):
            report.write(row_line(row, "skipped", config=_skipped_config(row, report),
                                  reason="output exists and is valid"))
        else:
            pending.append(row)
    return pending


def _open_runner(args: argparse.Namespace, settings: Settings, pending: list[Row]):
    """(run, close): run(rows, finish, stop) → why it stopped early, if it did.

    --local loads the engine here, before the progress starts, so load time is not in the ETA.
    """
    if args.local:
        from server.cli.batch.runner_local import LocalRunner

        if not pending:
            return (lambda rows, finish, stop: None), (lambda: None)
        runner = LocalRunner(settings)
        return runner.run, runner.close
    from server.cli.batch.remote_client import RetryPolicy
    from server.cli.batch.runner_remote import RemoteOptions, run_remote
    from server.media.decode import ImageLimits

    options = RemoteOptions(args.server, args.token, args.concurrency, args.timeout,
                            RetryPolicy(retries=max(0, args.retries)),
                            ImageLimits(max_bytes=settings.max_input_bytes))
    return (lambda rows, finish, stop: run_remote(rows, options, finish, stop)), (lambda: None)


def main_batch(args: argparse.Namespace) -> int:
    """`kontext batch`: settings from the environment and the flags given, then the batch."""

    try:
        settings = settings_from_args(args, batch_fields())
    except SETTINGS_ERRORS as exc:
        print(f"kontext batch: {settings_problem(exc)}", file=sys.stderr)
        return EXIT_SETUP
    return run_batch(args, settings)


def run_batch(args: argparse.Namespace, settings: Settings) -> int:
    """Run the batch the arguments describe; returns the exit status."""
    from server.logs import configure_logging

    configure_logging(settings.log_level, secrets=[args.token] if args.token else [])
    # httpx logs every request at INFO: one line per job would drown the progress lines.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    started = time.monotonic()
    try:
        raws, base_dir = _raw_rows(args)
    except ManifestError as exc:
        print(f"kontext batch: {exc}", file=sys.stderr)
        return EXIT_SETUP
    rows = resolve_rows(raws, config_defaults(args), base_dir, args.out, args.output_format)
    args.out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(args.out)
    report = Report(args.report or args.out / "report.jsonl")
    try:
        return _run(args, settings, rows, report, started)
    finally:
        report.close()


def _run(args: argparse.Namespace, settings: Settings, rows: list[Row | BadRow],
         report: Report, started: float) -> int:
    from pipelines.errors import EngineError
    from server.wiring import SafeguardsError

    pending = _triage(rows, report)
    try:
        run, close = _open_runner(args, settings, pending)
    except (EngineError, SafeguardsError) as exc:
        print(f"kontext batch: {exc}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:  # while loading the engine
        return _conclude(report, len(rows), started, None)
    progress = Progress(len(rows), len(rows) - len(pending))

    def finish(row: Row, status: str, **extra: Any) -> None:
        report.write(row_line(row, status, **extra))
        progress.advance(status, row.output.name, extra.get("error", ""))

    reason = None
    message = ("stopping: abandoning the edit in progress" if args.local
               else "stopping: waiting for the jobs in flight to finish")
    with StopRequest(message) as stop, progress.logging():
        try:
            reason = run(pending, finish, stop)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: the summary below says what did not run
        finally:
            progress.close()
            close()
    return _conclude(report, len(rows), started, reason)


def _conclude(report: Report, total: int, started: float, reason: str | None) -> int:
    """Print the one-line summary; the exit status."""
    counts = report.counts
    cut_short = sum(counts.values()) < total
    if reason:
        print(f"kontext batch: stopped: {reason}", file=sys.stderr)
    if report.notice:
        print(f"kontext batch: notice: {report.notice}")
    if report.shrunk:
        print(f"kontext batch: {report.shrunk} photo(s) over the size a /v2/job server takes "
              "were shrunk before sending, shape kept (`shrunk` in the report)")
    print(summary(counts, total, time.monotonic() - started, report.path,
                  cut_short and not reason))
    if reason or (counts["failed"] and not cut_short):
        return EXIT_FAILED
    return EXIT_INTERRUPTED if cut_short else EXIT_OK
