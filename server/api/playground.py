"""The browser playground at `/`: plain HTML/CSS/JS from server/static, and what it needs
to know about this server (limits, style presets, whether a token is required)."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from server.jobs.types import DEV_KONTEXT
from server.wire.models import DevKontextConfig, StylePreset

STATIC = Path(__file__).parent / "static"
_NUMBERS = ("width", "height", "steps", "guidance_scale")


def playground_config(auth_required: bool) -> dict[str, Any]:
    """The form's limits and defaults, read from the wire model so they cannot drift."""
    fields = DevKontextConfig.model_json_schema()["properties"]
    numbers = {}
    for name in _NUMBERS:
        info = fields[name]
        step = info.get("multipleOf", 1 if info["type"] == "integer" else 0.1)
        numbers[name] = {"min": info["minimum"], "max": info["maximum"], "step": step,
                         "default": info["default"]}
    return {"job_type": DEV_KONTEXT, "auth_required": auth_required,
            "style_presets": list(typing.get_args(StylePreset)), **numbers}


def mount_playground(app: FastAPI) -> None:
    """Serve the playground page at `/`, its files under /static, its config as JSON."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/playground/config.json", include_in_schema=False)
    async def config(request: Request) -> JSONResponse:
        return JSONResponse(playground_config(request.app.state.auth.enabled))
