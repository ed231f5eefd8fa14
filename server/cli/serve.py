"""`kontext serve`: resolve the weights, build the engine, run uvicorn."""

from __future__ import annotations

import logging
import sys

from server.settings import Settings

log = logging.getLogger("kontext")


def build_engine(settings: Settings):
    """The engine for these settings; raises WeightsError with a pointer to the docs."""
    from pipelines.engine import KontextEngine
    from pipelines.tiny_checkpoint import is_tiny_checkpoint, write_tiny_checkpoint
    from pipelines.weights import resolve_weights

    if settings.demo:
        if not is_tiny_checkpoint(settings.demo_dir):
            log.info("writing the tiny demo checkpoint to %s", settings.demo_dir)
            write_tiny_checkpoint(settings.demo_dir)
        source = resolve_weights(str(settings.demo_dir))
        device = "cpu" if settings.device == "auto" else settings.device
        return KontextEngine(source, device=device, demo=True,
                             warmup_steps=settings.warmup_steps, tier=settings.tier,
                             memory_mode=settings.memory_mode,
                             reference_token_budget=settings.reference_token_budget,
                             **lora_options(settings))
    source = resolve_weights(settings.weights, settings.base_weights)
    return KontextEngine(source, device=settings.device, warmup_steps=settings.warmup_steps,
                         tier=settings.tier, memory_mode=settings.memory_mode,
                         reference_token_budget=settings.reference_token_budget,
                         **lora_options(settings))


def lora_options(settings: Settings) -> dict[str, object]:
    """The engine's LoRA arguments (docs/loras.md): none without a LoRA folder."""
    if settings.lora_dir is None:
        return {}
    if not settings.lora_dir.expanduser().is_dir():  # a typo, or a folder mounted later
        log.warning("the LoRA folder %s does not exist (yet): no LoRAs are listed until it "
                    "does", settings.lora_dir)
    return {"lora_dir": settings.lora_dir, "lora_cache_bytes": settings.lora_cache_bytes,
            "lora_max_rank": settings.lora_max_rank}


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
    from server.api.auth import TokenFileError, configured_tokens, open_bind_refusal

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
    "tokens were given on the command line (--tokens), where other users of this machine "
    "can read them (ps, /proc); prefer KONTEXT_TOKENS in the environment or --token-file")


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
    from server.wiring import SafeguardsError

    try:
        tokens = check_serving_safety(settings)
    except ServeRefused as exc:
        print(f"kontext serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, log_secrets(settings, tokens))
    for warning in startup_warnings(tokens, tokens_from_flag):
        log.warning(warning)
    try:
        engine = build_engine(settings)
    except EngineError as exc:
        print(f"kontext serve: {exc}", file=sys.stderr)
        return 2
    if settings.demo:
        log.warning("DEMO MODE: tiny random weights on %s; every image is noise, not an edit",
                    engine.info.device)
    try:
        app = create_app(settings, engine)
    except SafeguardsError as exc:
        print(f"kontext serve: {exc}", file=sys.stderr)
        return 2
    return run_app(app, settings.host, settings.port)
