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
                             warmup_steps=settings.warmup_steps)
    source = resolve_weights(settings.weights, settings.base_weights)
    return KontextEngine(source, device=settings.device, warmup_steps=settings.warmup_steps)


def serve(settings: Settings) -> int:
    """Run the server until interrupted; returns the process exit code."""
    import uvicorn

    from pipelines.errors import EngineError
    from server.app import create_app
    from server.logs import configure_logging

    configure_logging(settings.log_level)
    try:
        engine = build_engine(settings)
    except EngineError as exc:
        print(f"kontext serve: {exc}", file=sys.stderr)
        return 2
    if settings.demo:
        log.warning("DEMO MODE: tiny random weights on %s; every image is noise, not an edit",
                    engine.info.device)
    app = create_app(settings, engine)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                timeout_graceful_shutdown=30)
    return 0
