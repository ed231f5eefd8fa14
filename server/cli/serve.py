"""`kontext serve`: check the settings are safe to serve, build the server (the composition
root builds its engines), run uvicorn."""

from __future__ import annotations

import logging
import os
import sys

from server.engine_build import build_engine
from server.settings import Settings

__all__ = ["build_engine", "serve"]

log = logging.getLogger("kontext")


def log_secrets(settings: Settings, tokens: tuple[str, ...]) -> list[str]:
    """Every credential the process knows, to be scrubbed from log lines."""
    secrets = list(tokens)
    credential = getattr(settings, "upstream_credential", None)
    if credential is not None and (value := credential()) is not None:
        secrets.append(value.get_secret_value())
    return secrets


class ServeRefused(Exception):
    """Serving these settings would be unsafe or cannot work; the message says why."""


def check_serving_safety(settings: Settings) -> tuple[str, ...]:
    """The configured tokens; raises ServeRefused for an open non-loopback bind."""
    from server.settings.tokens import TokenFileError, configured_tokens, open_bind_refusal

    try:
        tokens = configured_tokens(settings)
    except TokenFileError as exc:
        raise ServeRefused(str(exc)) from exc
    refusal = open_bind_refusal(settings, tokens)
    if refusal is not None:
        raise ServeRefused(refusal)
    return tokens


#: Said when tokens were given as a flag: other local users can read a command line.
TOKENS_ON_COMMAND_LINE = (
    "tokens were given on the command line (--tokens, --admin-tokens), where other users of "
    "this machine can read them (ps, /proc); prefer KONTEXT_TOKENS / KONTEXT_ADMIN_TOKENS "
    "in the environment or --token-file")


def startup_warnings(tokens: tuple[str, ...], tokens_from_flag: bool) -> list[str]:
    """What `kontext serve` warns about at startup, from how it authenticates."""
    warnings = []
    if not tokens:
        warnings.append("no tokens configured: every request is served without authentication")
    if tokens_from_flag:
        warnings.append(TOKENS_ON_COMMAND_LINE)
    return warnings


def serve(settings: Settings, tokens_from_flag: bool = False) -> int:
    """Run the server until stopped (SIGTERM drains it); returns the process exit code.

    `tokens_from_flag`: --tokens was given on the command line (warned about).
    """
    from pipelines.errors import EngineError
    from server.api.app import create_app
    from server.cli.runner import run_app
    from server.logs import configure_logging
    from server.tracing import configure as configure_tracing
    from server.wiring import SafeguardsError

    try:
        tokens = check_serving_safety(settings)
    except ServeRefused as exc:
        print(f"kontext serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, log_secrets(settings, tokens))
    for warning in startup_warnings(tokens, tokens_from_flag):
        log.warning(warning)
    # Traces follow the standard OTEL_* variables (read by the OpenTelemetry SDK), not
    # KONTEXT_* settings: collectors and operators already speak them.
    configure_tracing(os.environ)
    if settings.ray_address:
        return _serve_on_ray(settings)
    try:
        app = create_app(settings)  # the engines --device / --devices ask for
    except (EngineError, SafeguardsError) as exc:
        print(f"kontext serve: {exc}", file=sys.stderr)
        return 2
    return run_app(app, settings.host, settings.port)


def _serve_on_ray(settings: Settings) -> int:
    """Serve on the Ray cluster; a missing Ray or an unreachable cluster is one line, exit 2."""
    try:
        from server.ray.app import serve_on_ray
    except ImportError as exc:
        print(f"kontext serve: --ray-address needs Ray ({exc}): pip install -e '.[ray]'",
              file=sys.stderr)
        return 2
    try:
        return serve_on_ray(settings)
    except ConnectionError as exc:  # ray.init: no cluster at that address
        print(f"kontext serve: --ray-address {settings.ray_address}: {exc}", file=sys.stderr)
        return 2
