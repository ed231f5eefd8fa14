"""The `kontext` command: serve, and the weights tools."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from server.settings import Settings

_SERVE_FIELDS = ("weights", "base_weights", "demo", "demo_dir", "host", "port", "device",
                 "queue_size", "tokens", "warmup", "warmup_steps", "max_body_bytes",
                 "max_input_bytes", "max_input_parts", "jpeg_quality", "log_level",
                 # async jobs and their results on disk (issue 5)
                 "results_dir", "results_retention_seconds", "results_cleanup_seconds",
                 "async_queue_size",
                 # GPU engine tiers and memory modes (issue 4)
                 "tier", "memory_mode",
                 # forwarding [pro]/[max] upstream (issue 3)
                 "upstream", "hosted_url", "hosted_token_env", "bfl_url", "bfl_key_env",
                 "upstream_hosts", "upstream_ca_file", "upstream_timeout",
                 "upstream_job_timeout", "upstream_retry_budget", "upstream_max_in_flight",
                 "upstream_poll_interval", "upstream_max_bytes", "fallback", "fallback_steps",
                 # production: auth, limits, logs, shutdown (issue 6)
                 "token_file", "allow_open", "open_probes", "max_json_bytes", "max_json_depth",
                 "job_timeout_seconds", "shutdown_grace_seconds", "log_format", "log_prompts")


def _add_setting(parser: argparse.ArgumentParser, name: str) -> None:
    """One --flag per settings field; its help is the field's description."""
    info = Settings.model_fields[name]
    flag = "--" + name.replace("_", "-")
    # argparse treats % as a format code in help strings.
    description = (info.description or "").replace("%", "%%")
    help_text = f"{description} [env: KONTEXT_{name.upper()}]"
    # argparse.SUPPRESS: flags not given leave the field to the environment or its default.
    kwargs: dict = {"default": argparse.SUPPRESS, "help": help_text, "dest": name}
    annotation = info.annotation
    if annotation is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        return
    if typing.get_origin(annotation) is typing.Literal:
        kwargs["choices"] = typing.get_args(annotation)
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        pass
    elif name == "tokens":
        kwargs["action"] = "append"
    parser.add_argument(flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="kontext", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the /v2/job server",
        description="Run the /v2/job server. Every option can also be set through the "
        "environment variable shown in its help.")
    for name in _SERVE_FIELDS:
        _add_setting(serve, name)
    weights = commands.add_parser("weights", help="weights tools").add_subparsers(
        dest="weights_command", required=True)
    tiny = weights.add_parser("tiny", help="write a tiny random checkpoint (diffusers layout)")
    tiny.add_argument("directory", type=Path)
    check = weights.add_parser("check", help="say what a weights folder or file holds")
    check.add_argument("path")
    check.add_argument("--base-weights", default=None,
                       help="components for a single-file transformer")
    # kontext batch (issue 5): its own flags plus the engine settings serve takes.
    from server.batch.args import BATCH_PARSER, BATCH_SETTINGS, add_batch_arguments

    batch = commands.add_parser("batch", **BATCH_PARSER)
    add_batch_arguments(batch)
    for name in BATCH_SETTINGS:
        _add_setting(batch, name)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags that were given."""
    given = {name: getattr(args, name) for name in _SERVE_FIELDS if hasattr(args, name)}
    return Settings(**given)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kontext` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "weights":
        return _weights(args)
    if args.command == "batch":
        from server.batch.main import main_batch

        return main_batch(args)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"kontext serve: invalid setting:\n{exc}", file=sys.stderr)
        return 2
    from server.serve import serve

    return serve(settings)


def _weights(args: argparse.Namespace) -> int:
    if args.weights_command == "tiny":
        from pipelines.tiny_checkpoint import write_tiny_checkpoint

        path = write_tiny_checkpoint(args.directory)
        print(f"wrote a tiny random FLUX.1 Kontext checkpoint to {path} (images are noise)")
        return 0
    from pipelines.weights_check import check_weights

    report = check_weights(args.path, args.base_weights)
    print(report.render())
    return 0 if report.loadable else 1


if __name__ == "__main__":
    raise SystemExit(main())
