"""The browser playground at `/`: plain HTML/CSS/JS from static/, and what it needs
to know about this server (`/playground/config.json`): which job types it can run, and
each type's form fields with their limits, read from the wire models so they cannot drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from server.api.deps import ServerDep
from server.jobs.backends.base import Backend
from server.jobs.backends.refusing import RefusingBackend
from server.jobs.service import JobService
from server.jobs.types import DEV_KONTEXT, JOB_TYPES, JobType
from server.wire.hosted import hosted_kind
from server.wire.loras import LoraSpec
from server.wire.models import MAX_SIDE, MIN_SIDE, SIDE_UNIT
from server.wire.ratio import ASPECT_RULE, SHAPE_AREA

STATIC = Path(__file__).parent / "static"

#: Bumped when the shape of config.json changes (the page checks it).
CONFIG_VERSION = 4

#: The form fields the page shows per job type, in order (the prompt has its own box).
#: A new form field is one name here and one renderer in static/fields.js.
FORM_FIELDS = {
    "local": ("style_preset", "width", "height", "steps", "guidance_scale", "seed",
              "reference_method", "loras"),
    "upstream": ("aspect_ratio", "safety_tolerance", "prompt_upsampling", "seed"),
    "klein": ("width", "height", "steps", "seed", "safety_tolerance", "loras"),
}

#: Fields that only mean something with this many input images: the page shows and sends
#: them only then (a one-image job's JSON stays as the hosted API knows it).
FIELD_MIN_INPUTS = {"reference_method": 2}

#: Fields the page fills itself when left empty (the output size: the input's shape).
AUTO_FIELDS = ("width", "height")

#: Ratios offered for aspect_ratio (any W:H between 21:9 and 9:21 is accepted).
ASPECT_RATIOS = ("21:9", "16:9", "3:2", "4:3", "1:1", "3:4", "2:3", "9:16", "9:21")

OUTPUT_FORMATS = ("jpeg", "png", "webp")


def _kind(name: str, info: dict[str, Any]) -> str:
    """The form widget a schema property needs: seed, aspect_ratio, loras, enum or its JSON
    type."""
    if name in ("seed", "aspect_ratio", "loras"):
        return name
    types = [info, *info.get("anyOf", [])]
    if any("enum" in option for option in types):
        return "enum"
    return next(option["type"] for option in types if option.get("type") not in (None, "null"))


def field_spec(name: str, info: dict[str, Any]) -> dict[str, Any]:
    """One form field, from its JSON-schema property: kind, label, limits, default."""
    kind = _kind(name, info)
    if kind in ("integer", "number") and "anyOf" in info:  # optional: the number's limits
        number = next(option for option in info["anyOf"] if option.get("type") == kind)
        info = {**number, **info}
    spec: dict[str, Any] = {"name": name, "kind": kind, "label": info.get("title", name),
                            "description": info.get("description", ""),
                            "default": info.get("default")}
    if kind in ("integer", "number"):
        step = info.get("multipleOf", 1 if kind == "integer" else 0.1)
        spec.update(min=info["minimum"], max=info["maximum"], step=step)
    elif kind == "seed":
        # As text: seeds go up to 2^63-1, past what a JavaScript number holds exactly.
        spec.update(min=str(info["minimum"]), max=str(info["maximum"]))
    elif kind == "enum":
        options = [option for option in [info, *info.get("anyOf", [])] if "enum" in option]
        spec["options"] = list(options[0]["enum"])
        spec["optional"] = any(option.get("type") == "null" for option in info.get("anyOf", []))
    elif kind == "aspect_ratio":
        spec.update(options=list(ASPECT_RATIOS), rule=ASPECT_RULE)
    if name in FIELD_MIN_INPUTS:
        spec["min_inputs"] = FIELD_MIN_INPUTS[name]
    if name in AUTO_FIELDS:
        spec["auto"] = True
    if kind == "loras":  # a picker over GET /v2/loras (static/loras.js)
        scale = LoraSpec.model_json_schema()["properties"]["scale"]
        spec.update(max_items=info["anyOf"][0]["maxItems"], list_url="/v2/loras",
                    scale={"min": scale["minimum"], "max": scale["maximum"],
                           "default": scale["default"], "step": 0.05})
    return spec


def runner(backend: Backend, job_type: JobType) -> tuple[str | None, str | None]:
    """Where the backend runs its jobs, or None and why it cannot (read from the backend
    the service really has, so the page offers exactly what the server can run: a model
    family the engines do not serve is not offered)."""
    if isinstance(backend, RefusingBackend):
        return None, backend.reason
    reason = backend.refuses(job_type)
    if reason is not None:
        return None, reason
    return backend.runs_on, None


def _form(job_type: JobType) -> str:
    """Which form a job type gets: Kontext [dev]'s, klein's or the hosted types'."""
    return "klein" if (job_type.model or "").startswith("klein") else job_type.backend


def _label(job_type: JobType) -> str:
    if job_type.name == DEV_KONTEXT:
        return "FLUX.1 Kontext [dev] — edit"
    if _form(job_type) == "klein":
        size = {"klein-4b": " 4B", "klein-9b": " 9B"}.get(job_type.model or "", "")
        task = "edit" if job_type.min_inputs else "text to image"
        return f"FLUX.2 [klein]{size} — {task}"
    kind = hosted_kind(job_type.name)
    task = "edit" if kind.task == "img2img" else "text to image"
    return f"FLUX.1 Kontext [{kind.model}] — {task}"


def job_type_entry(job_type: JobType, service: JobService) -> dict[str, Any]:
    """What the page needs to offer one job type: whether it runs here, and its fields."""
    runs_on, reason = runner(service.backend_for(job_type), job_type)
    properties = job_type.config_model.model_json_schema()["properties"]
    prompt = properties["prompt"]
    names = FORM_FIELDS[_form(job_type)]
    # klein edits take their first input's size on the server: the page leaves it empty.
    sized = all(name in names for name in AUTO_FIELDS) and job_type.min_inputs > 0 \
        and _form(job_type) != "klein"
    return {
        "type": job_type.name, "label": _label(job_type), "model": job_type.model,
        "min_inputs": job_type.min_inputs, "max_inputs": job_type.max_inputs,
        # With no size typed, the input's shape at about 1 MP (static/size.js does the
        # arithmetic of server/wire/ratio.py: size_for_shape, with these bounds).
        "size_from_input": {"low": MIN_SIDE, "high": MAX_SIDE, "unit": SIDE_UNIT,
                            "area": SHAPE_AREA} if sized else None,
        "runnable": runs_on is not None, "runs_on": runs_on, "reason": reason,
        "prompt": {"min_length": prompt["minLength"], "max_length": prompt["maxLength"],
                   "description": prompt.get("description", "")},
        "fields": [field_spec(name, properties[name]) for name in names],
    }


def playground_config(service: JobService, auth_required: bool) -> dict[str, Any]:
    """The body of /playground/config.json (docs/architecture.md, "The playground's
    modules")."""
    limits = service.image_limits
    entries = [job_type_entry(job_type, service) for job_type in JOB_TYPES.values()]
    # Kontext [dev] when it is served, else the first local type that runs here.
    default = next((entry["type"] for entry in entries if entry["runnable"]
                    and entry["runs_on"] == "local"), DEV_KONTEXT)
    default = DEV_KONTEXT if any(entry["type"] == DEV_KONTEXT and entry["runnable"]
                                 for entry in entries) else default
    return {
        "version": CONFIG_VERSION, "auth_required": auth_required,
        # Photos over these are shrunk in the page before they are sent (shape kept).
        "input_limits": {"max_side": limits.max_side, "max_bytes": limits.max_bytes},
        "default_job_type": default, "output_formats": list(OUTPUT_FORMATS),
        "job_types": entries,
    }


def mount_playground(app: FastAPI) -> None:
    """Serve the playground page at `/`, its files under /static, its config as JSON."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/playground/config.json", include_in_schema=False)
    async def config(server: ServerDep) -> JSONResponse:
        return JSONResponse(playground_config(server.service, server.auth.enabled))
