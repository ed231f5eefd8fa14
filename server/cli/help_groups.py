"""`kontext serve --help` grouped by what the flags configure: each settings field lands in
one group, by the settings module that defines it, the serving module's fields split by
topic (tests/unit/test_help_groups.py checks that none is left out)."""

from __future__ import annotations

from server.settings.edge import EdgeSettings
from server.settings.engine import EngineSettings
from server.settings.results import ResultsSettings
from server.settings.safety import SafetySettings
from server.settings.scale import ScaleSettings
from server.settings.upstream import UpstreamSettings

#: (title, what the group configures, the fields in it), in --help order.
_TOPICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("settings file", "Read settings from a file; flags and KONTEXT_* variables win over it.",
     ("config",)),
    ("serving", "The bind, the queue, the time a job may take, shutdown.",
     ("host", "port", "queue_size", "client_share", "job_timeout_seconds",
      "shutdown_grace_seconds")),
    ("engine", "The local engine: weights, device, warm-up, tier and memory, LoRAs.",
     tuple(EngineSettings.model_fields)),
    ("devices and scale-out", "Every GPU of a machine (--devices), or many on Ray Serve.",
     tuple(ScaleSettings.model_fields)),
    ("request limits", "What one request may carry (sizes: 12MiB, 64 MiB or bytes).",
     ("max_body_bytes", "max_input_bytes", "downscale_inputs", "max_input_parts",
      "max_json_bytes", "max_json_depth")),
    ("HTTP edge", "Limits applied to connections before any application code runs.",
     tuple(EdgeSettings.model_fields)),
    ("auth", "Bearer tokens, and what may be served without one.",
     ("tokens", "admin_tokens", "token_file", "allow_open", "open_probes")),
    ("upstream", "Forwarding [pro]/[max] jobs, and falling back to the local engine.",
     tuple(UpstreamSettings.model_fields)),
    ("safety and disclosure", "The content filter and the AI-disclosure marks on outputs.",
     tuple(SafetySettings.model_fields)),
    ("async results", "Where async jobs' records and outputs are kept, and for how long.",
     tuple(ResultsSettings.model_fields)),
    ("observability", "Logs (metrics are at /metrics; traces follow the OTEL_* variables).",
     ("log_level", "log_format", "log_prompts")),
)


def help_groups() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """The --help groups: (title, description, the settings fields in it)."""
    return _TOPICS


def group_of(name: str) -> str:
    """The title of the group a settings field is shown in; KeyError for none."""
    for title, _description, fields in _TOPICS:
        if name in fields:
            return title
    raise KeyError(f"settings field {name!r} is in no --help group (server/cli/help_groups.py)")


def grouped(names: tuple[str, ...]) -> list[tuple[str, str, list[str]]]:
    """`names` sorted into their groups, in --help order (empty groups left out); KeyError
    for a field in no group (a new setting must be given one)."""
    wanted = set(names)
    for name in sorted(wanted):
        group_of(name)
    return [(title, description, [n for n in fields if n in wanted])
            for title, description, fields in _TOPICS if wanted.intersection(fields)]

