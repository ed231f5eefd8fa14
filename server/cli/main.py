"""The `kontext` command: serve, the weights tools, batch edits and one edit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from server.cli.settings_flags import (
    SETTINGS_ERRORS,
    add_settings,
    serve_fields,
    settings_from_args,
    settings_problem,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="kontext", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the /v2/job server",
        usage="kontext serve [--config FILE] [--OPTION VALUE ...]",
        description="Run the /v2/job server. Every option can also be set through the "
        "environment variable shown in its help, and in a settings file (--config) under "
        "its name with underscores. Flags win over the environment, which wins over the "
        "file.")
    add_settings(serve, serve_fields())
    weights = commands.add_parser("weights", help="weights tools").add_subparsers(
        dest="weights_command", required=True)
    tiny = weights.add_parser("tiny", help="write a tiny random checkpoint (diffusers layout)")
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--model", default="kontext-dev",
                      choices=("kontext-dev", "klein-4b", "klein-9b"),
                      help="the model family (both klein sizes share one tiny checkpoint)")
    check = weights.add_parser("check", help="say what a weights folder or file holds")
    check.add_argument("path")
    check.add_argument("--model", default="kontext-dev",
                       choices=("kontext-dev", "klein-4b", "klein-9b"),
                       help="the model family the weights are for (default: kontext-dev)")
    check.add_argument("--base-weights", default=None,
                       help="components for a single-file transformer")
    # kontext batch: its own flags plus the engine settings serve takes.
    from server.cli.batch.args import BATCH_PARSER, add_batch_arguments
    from server.cli.settings_flags import batch_fields

    batch = commands.add_parser("batch", **BATCH_PARSER)
    add_batch_arguments(batch)
    add_settings(batch, batch_fields())
    # kontext edit: one edit, on a server or in-process (--local takes the engine settings).
    from server.cli.edit.args import EDIT_PARSER, add_edit_arguments

    edit = commands.add_parser("edit", **EDIT_PARSER)
    add_edit_arguments(edit)
    add_settings(edit, batch_fields())
    # kontext probe: the container's HEALTHCHECK, in whatever probe mode the server runs.
    from server.cli.probe import add_probe_arguments

    probe = commands.add_parser(
        "probe", help="ask a running server's /readyz (or /healthz) as its settings say",
        description="Ask a running server's /readyz (--live: /healthz) on the port, host and "
        "with the token its settings give; exit 0 on a 200.")
    add_probe_arguments(probe)
    add_settings(probe, serve_fields())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kontext` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "weights":
        return _weights(args)
    if args.command == "batch":
        from server.cli.batch.main import main_batch

        return main_batch(args)
    if args.command == "edit":
        from server.cli.edit.main import main_edit

        return main_edit(args)
    if args.command == "probe":
        from server.cli.probe import main_probe

        return main_probe(args, _probe_settings)
    try:
        settings = settings_from_args(args, serve_fields())
    except SETTINGS_ERRORS as exc:
        print(f"kontext serve: {settings_problem(exc, config_named(args))}", file=sys.stderr)
        return 2
    from server.cli.serve import serve

    return serve(settings, tokens_from_flag=hasattr(args, "tokens")
                 or hasattr(args, "admin_tokens"))


def _probe_settings(serve_argv: list[str], args: argparse.Namespace):
    """The probed server's settings: its `kontext serve` flags, then `kontext probe`'s own
    settings flags, over the environment."""
    served = build_parser().parse_args(["serve", *serve_argv])
    given = {name: getattr(args, name) for name in serve_fields() if hasattr(args, name)}
    return settings_from_args(argparse.Namespace(**{**vars(served), **given}))


def config_named(args: argparse.Namespace) -> object:
    """The settings file the command line names, if any (the environment's is read by
    Settings itself; error messages name the flag's)."""
    return getattr(args, "config", None)


def _weights(args: argparse.Namespace) -> int:
    if args.weights_command == "tiny":
        from pipelines.weights.tiny import write_tiny_checkpoint
        from pipelines.weights.tiny_klein import write_tiny_klein_checkpoint

        klein = args.model != "kontext-dev"
        try:
            path = (write_tiny_klein_checkpoint if klein else write_tiny_checkpoint)(
                args.directory)
        except OSError as exc:
            print(f"kontext weights tiny: cannot write {args.directory}: {exc}", file=sys.stderr)
            return 2
        what = "FLUX.2 [klein]" if klein else "FLUX.1 Kontext"
        print(f"wrote a tiny random {what} checkpoint to {path} (images are noise)")
        return 0
    from pipelines.weights.check import check_weights

    report = check_weights(args.path, args.base_weights, args.model)
    print(report.render())
    return 0 if report.loadable else 1


if __name__ == "__main__":
    raise SystemExit(main())
