"""The `kontext edit` command-line arguments (argparse only: cheap to import)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from server.wire.models import StylePreset

DEFAULT_SERVER = "http://127.0.0.1:8000"
#: `--model`: each family's edit job type.
EDIT_TYPES = {"kontext-dev": "inference.flux-fast.dev-kontext.img2img.v1",
              "klein-4b": "inference.flux-2.klein.4b.img2img.v1",
              "klein-9b": "inference.flux-2.klein.9b.img2img.v1"}
#: The environment variable the bearer token is read from when --token is not given.
TOKEN_ENV = "KONTEXT_TOKEN"

DESCRIPTION = """\
Edit one image with FLUX.1 Kontext [dev] (inference.flux-fast.dev-kontext.img2img.v1), or
with the model or job type --model / --type name (e.g. --model klein-4b), and write the
result: through a running /v2/job server (--server, the default, with its async
API and a live progress bar) or in this process on local weights (--local with --weights
or --demo). The config is checked here first, with the server's own rules and messages.
Prints the seed used and where the file was written.
"""

EPILOG = f"""\
The output format follows -o's extension (.png, .jpg/.jpeg, .webp; default
IMAGE-edited.png in the current folder). The token for --server is --token or ${TOKEN_ENV}.
A photo over 1920 px a side (or 10 MB) is shrunk before it is sent, shape kept (a /v2/job
server takes no larger), and a line says so.
Exit status: 0 written, 1 the edit failed or was refused, 2 a bad argument, config or
setting, or --local that cannot start (weights, content filter, C2PA pair),
130 interrupted (Ctrl-C cancels the edit, on the server too).
"""

EDIT_PARSER = {
    "help": "edit one image from the shell (on a server or in-process)",
    "description": DESCRIPTION, "epilog": EPILOG,
    "formatter_class": argparse.RawDescriptionHelpFormatter,
}


def add_edit_arguments(parser: argparse.ArgumentParser) -> None:
    """The edit-specific arguments; engine settings (for --local) are added by the caller."""
    parser.add_argument("image", type=Path, help="the image to edit (PNG, JPEG or WebP)")
    parser.add_argument("instruction", help='the edit instruction, e.g. "add a bowler hat"')
    parser.add_argument("-o", "--out", type=Path, metavar="PATH",
                        help="where to write the result (default: IMAGE-edited.png here)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="URL", default=DEFAULT_SERVER,
                       help=f"a /v2/job server, root or /v2 base (default: {DEFAULT_SERVER})")
    where.add_argument("--local", action="store_true",
                       help="run the engine in this process (with --weights or --demo)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"bearer token for --server (default: ${TOKEN_ENV})")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--type", dest="job_type", metavar="JOB_TYPE",
                       help="the job type (default: inference.flux-fast.dev-kontext."
                       "img2img.v1), e.g. inference.flux-2.klein.4b.img2img.v1")
    which.add_argument("--model", choices=tuple(EDIT_TYPES), help="the model family: "
                       "its edit job type (kontext-dev, or klein's img2img)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the server's answers (default 600)")
    config = parser.add_argument_group("edit config (the server's defaults when not given)")
    config.add_argument("--seed", type=int, help="seed (default: random, printed)")
    config.add_argument("--width", type=int, help="output width (512-1040, multiple of 16; "
                        "default: the photo's shape at about 1 MP, e.g. 1040x784 for 4:3)")
    config.add_argument("--height", type=int, help="output height (default: as --width)")
    config.add_argument("--aspect-ratio", dest="aspect_ratio", metavar="W:H",
                        help="instead of --width/--height: the output's shape")
    config.add_argument("--steps", type=int, help="denoising steps (1-50; default 30)")
    config.add_argument("--guidance-scale", dest="guidance_scale", type=float,
                        help="guidance scale (1-10; default 2.5)")
    config.add_argument("--preset", "--style-preset", dest="style_preset",
                        choices=StylePreset.__args__, metavar="PRESET",
                        help="a style preset: " + ", ".join(StylePreset.__args__))


def edit_type(args: argparse.Namespace) -> str:
    """The job type --type or --model asks for (default: dev-kontext)."""
    if getattr(args, "job_type", None):
        return args.job_type
    return EDIT_TYPES[getattr(args, "model", None) or "kontext-dev"]


def edit_config(args: argparse.Namespace) -> dict[str, object]:
    """The job config the arguments describe (only what was given: the rest is defaults)."""
    names = ("seed", "width", "height", "aspect_ratio", "steps", "guidance_scale",
             "style_preset")
    return {"prompt": args.instruction,
            **{name: getattr(args, name) for name in names if getattr(args, name) is not None}}
