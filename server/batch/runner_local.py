"""`--local`: run the rows through the engine in this process, one at a time.

The engine is built exactly as `kontext serve` builds it, and each row is translated to an
engine request by the server's own `edit_request` (style presets applied), so a row means
the same edit here as through the server.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pipelines.errors import Cancelled, EngineError
from pipelines.types import RunControl
from server.batch.manifest import Row
from server.batch.outputs import write_atomic
from server.batch.report import Finish
from server.batch.stop import StopRequest
from server.errors import ApiError, from_engine_error
from server.images import ImageLimits, decode_input_image, encode_image
from server.local_backend import edit_request
from server.settings import Settings

log = logging.getLogger(__name__)


def load_engine(settings: Settings):
    """Build and load the engine for --weights/--demo; raises EngineError on bad weights."""
    from server.serve import build_engine

    engine = build_engine(settings)
    started = time.monotonic()
    engine.load()
    log.info("engine loaded in %.1fs: %s", time.monotonic() - started, engine.info)
    return engine


def run_local(rows: list[Row], engine, settings: Settings, finish: Finish,
              stop: StopRequest) -> None:
    """Run each row until done or stopped; a stopped edit is abandoned (nothing written)."""
    limits = ImageLimits(max_bytes=settings.max_input_bytes)
    for row in rows:
        if stop.is_set():
            return
        started = time.monotonic()
        try:
            extra = _run_row(row, engine, settings, limits, stop)
        except Cancelled:
            return
        except EngineError as exc:
            _fail(finish, row, from_engine_error(exc).message, started)
        except ApiError as exc:
            _fail(finish, row, exc.message, started)
        except OSError as exc:
            _fail(finish, row, f"{type(exc).__name__}: {exc}", started)
        else:
            finish(row, "ok", seconds=round(time.monotonic() - started, 3), **extra)


def _run_row(row: Row, engine, settings: Settings, limits: ImageLimits,
             stop: StopRequest) -> dict[str, Any]:
    """Decode, edit, encode, write; returns the report fields of a finished row."""
    image = decode_input_image(row.image.read_bytes(), "image", limits)
    # The stop event doubles as the cancel flag: Ctrl-C stops the edit at the next step.
    result = engine.run(edit_request(row.config, image), RunControl(cancel=stop.event))
    data = encode_image(result.image, row.fmt, row.config.progressive, settings.jpeg_quality)
    write_atomic(row.output, data)
    return {"config": row.config.model_dump(),
            "metrics": {"elapsed": round(result.elapsed, 3), "ips": round(result.ips, 3)}}


def _fail(finish: Finish, row: Row, error: str, started: float) -> None:
    finish(row, "failed", config=row.config.model_dump(), error=error,
           seconds=round(time.monotonic() - started, 3))
