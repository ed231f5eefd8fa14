"""The `kontext batch` command-line arguments (argparse only: cheap to import)."""

from __future__ import annotations

import argparse
from pathlib import Path

from server.cli.batch.manifest import loras_text
from server.wire.models import StylePreset

DESCRIPTION = """\
Run many FLUX.1 Kontext [dev] edits (inference.flux-fast.dev-kontext.img2img.v1) and write
the results to a folder, either in-process (--local) or through any /v2/job server
(--server URL: this project's server or the hosted API; the wire format is the same).

Input: a manifest (JSONL: one JSON object per line; or CSV with a header row) whose
fields are `image` (path, relative to the manifest's folder), `prompt`, and optionally
`style_preset`, `width`, `height`, `steps`, `guidance_scale`, `seed`, `progressive`,
`loras` (JSONL: as in the job config; CSV: `name:scale;name2`, docs/loras.md) and `output`
(file name inside --out; its extension picks PNG, JPEG or WebP). Or --images DIR with
--prompt: one instruction over every PNG/JPEG/WebP file in DIR. The config flags below are
defaults that manifest fields override.
"""

EPILOG = """\
Resuming: re-running the same command skips every row whose output already exists, decodes
and has the expected size; outputs are written atomically, so an interrupted run leaves no
partial files. Ctrl-C stops cleanly: --local abandons the edit in progress, --server lets
the requests in flight finish (Ctrl-C again abandons them); the report is written either
way and the exit status is 130.

Sizes: a row that gives no width, height or aspect_ratio gets its photo's shape at about
1 MP (the nearest valid size). Photos over 1920 px a side (or 10 MB) are shrunk before
they are sent, shape kept; the report lists them (`shrunk`).

Seeds: a row without a seed gets a random one at run time, recorded in the report
(`config.seed`). Re-running such a row produces a different image unless its output
already exists (then it is skipped and its earlier seed is carried over in the report).

Report: one JSON line per row (default OUT/report.jsonl) with status ok/skipped/failed,
the resolved config with the seed used, the output path, and the timing or the error.
Exit status: 0 when no row failed, 1 when some row failed, 2 on a setup error, 130 when
interrupted.
"""


#: Keyword arguments of the `batch` subparser.
BATCH_PARSER = {
    "help": "run many dev-kontext edits from a manifest or a folder (resumable)",
    "description": DESCRIPTION, "epilog": EPILOG,
    "formatter_class": argparse.RawDescriptionHelpFormatter,
}


def _add_config_defaults(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("edit config (defaults for every row)")
    group.add_argument("--type", dest="type", metavar="JOB_TYPE",
                       help="the job type of every row without a `type` field (default: "
                       "inference.flux-fast.dev-kontext.img2img.v1; e.g. "
                       "inference.flux-2.klein.4b.img2img.v1)")
    group.add_argument("--prompt", help="the edit instruction (required with --images)")
    group.add_argument("--style-preset", dest="style_preset",
                       choices=StylePreset.__args__, help="a style preset")
    group.add_argument("--width", type=int, help="output width (512-1040, multiple of 16; "
                       "default: each row's photo's shape at about 1 MP)")
    group.add_argument("--height", type=int, help="output height (default: as --width)")
    group.add_argument("--steps", type=int, help="denoising steps (1-50; default 30)")
    group.add_argument("--guidance-scale", dest="guidance_scale", type=float,
                       help="guidance scale (1-10; default 2.5)")
    group.add_argument("--seed", type=int, help="seed for every row (default: random per row, "
                       "see 'Seeds' below)")
    group.add_argument("--loras", type=loras_text, metavar="NAME[:SCALE];...",
                       help="LoRAs for every row, e.g. 'styles/ghibli:0.8;relight' (at most "
                       "3, from the LoRA folder: --lora-dir with --local)")


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The batch-specific arguments; engine settings are added by the caller."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("manifest", nargs="?", type=Path,
                        help="a .jsonl or .csv manifest, one edit per row")
    source.add_argument("--images", type=Path, metavar="DIR",
                        help="run --prompt over every image in this folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder the outputs are written to (created if missing)")
    parser.add_argument("--report", type=Path, metavar="PATH",
                        help="the JSONL report (default: OUT/report.jsonl)")
    parser.add_argument("--format", dest="output_format", choices=("png", "jpeg", "webp"),
                        default="png", help="output format when a row names no extension")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--local", action="store_true",
                      help="run the engine in this process (with --weights or --demo)")
    mode.add_argument("--server", metavar="URL",
                      help="send the jobs to this /v2/job server, e.g. http://127.0.0.1:8000 "
                      "or https://inference.prodia.com/v2")
    remote = parser.add_argument_group("--server options")
    remote.add_argument("--token", help="bearer token for --server")
    remote.add_argument("--concurrency", type=int, default=2,
                        help="jobs in flight at once (default 2)")
    remote.add_argument("--retries", type=int, default=2,
                        help="retries of a job after a 5xx answer or a connection error "
                        "(default 2; 429 is retried up to 10 times after Retry-After; "
                        "400/401/403 never)")
    remote.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for one job's answer (default 600)")
    _add_config_defaults(parser)


def config_defaults(args: argparse.Namespace) -> dict[str, object]:
    """The config flags that were given, as wire-config fields."""
    names = ("type", "prompt", "style_preset", "width", "height", "steps", "guidance_scale",
             "seed", "loras")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}
