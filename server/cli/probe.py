"""`kontext probe`: ask a running server whether it is ready (/readyz) or alive (/healthz,
`--live`) the way its settings say: on the probe port when `probe_port` is set, else on the
main port; on loopback when it binds every address; with a token when probes need one
(`--no-open-probes`). Exit 0 on a 200, 1 otherwise (the answer's status or the connection
error on one line), 2 when the settings cannot be read.

The container's HEALTHCHECK (Dockerfile.cuda) runs `kontext probe --args-of 1`: the
server's own command line (PID 1, `kontext serve ...`) is read from /proc and its flags
count as they do for the server, on top of the same environment, so flags given after the
image name (`--probe-port`, `--no-open-probes`, `--port`) move the probe with them."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from pathlib import Path

from server.cli.settings_flags import SETTINGS_ERRORS, settings_problem
from server.settings import Settings
from server.settings.tokens import TokenFileError, configured_tokens

#: Where a server bound to every address is asked (loopback of the same family).
LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


class ProbeSetupError(Exception):
    """The server's command line or settings cannot be read."""


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """`kontext probe`'s own flags (the settings flags are added beside them)."""
    parser.add_argument("--live", action="store_true",
                        help="ask /healthz (alive) instead of /readyz (ready for jobs)")
    parser.add_argument("--args-of", type=int, default=None, metavar="PID",
                        help="also read the settings flags of the `kontext serve` process "
                        "PID (its /proc/PID/cmdline); the container's HEALTHCHECK uses 1")
    parser.add_argument("--timeout", type=float, default=4.0,
                        help="seconds to wait for the answer (default: 4)")


def serve_args_of(cmdline: Path) -> list[str]:
    """The arguments after `serve` in a process's NUL-separated command line."""
    try:
        argv = cmdline.read_bytes().decode().split("\0")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeSetupError(f"cannot read {cmdline}: {exc}") from exc
    if "serve" not in argv:
        raise ProbeSetupError(f"{cmdline} is not a `kontext serve` command line: "
                              f"{' '.join(argv).strip()!r}")
    return [arg for arg in argv[argv.index("serve") + 1:] if arg]


def probe_request(settings: Settings, live: bool) -> urllib.request.Request:
    """The GET these settings' probe is: URL and, when probes are closed, the token."""
    host = LOOPBACK.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    port = settings.probe_port if settings.probe_port is not None else settings.port
    request = urllib.request.Request(f"http://{host}:{port}/{'healthz' if live else 'readyz'}")
    if not settings.open_probes:
        try:
            tokens = configured_tokens(settings)
        except TokenFileError as exc:
            raise ProbeSetupError(str(exc)) from exc
        if tokens:  # without tokens the server asks for none
            request.add_header("Authorization", f"Bearer {tokens[0]}")
    return request


def ask(request: urllib.request.Request, timeout: float) -> tuple[bool, str]:
    """(answered 200, one line saying what came back)."""
    # No proxy: the server is on this host, whatever HTTP(S)_PROXY the container carries.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:  # refused, timed out, reset, bad URL
        return False, f"no answer from {request.full_url}: {exc}"
    return status == 200, f"{status} from {request.full_url}"


def main_probe(args: argparse.Namespace, settings_of) -> int:
    """Run `kontext probe`; `settings_of(argv)` turns `kontext serve` arguments (the
    probed process's, then this command's own settings flags) into Settings."""
    try:
        argv = serve_args_of(Path(f"/proc/{args.args_of}/cmdline")) \
            if args.args_of is not None else []
        settings = settings_of(argv, args)
        request = probe_request(settings, args.live)
    except ProbeSetupError as exc:
        print(f"kontext probe: {exc}", file=sys.stderr)
        return 2
    except SETTINGS_ERRORS as exc:  # the flags, the environment or the settings file
        print(f"kontext probe: {settings_problem(exc)}", file=sys.stderr)
        return 2
    ok, said = ask(request, args.timeout)
    print(("ok: " if ok else "failed: ") + said)
    return 0 if ok else 1
