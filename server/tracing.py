"""OpenTelemetry traces of each job's phases, when the standard OTEL_* variables ask for them
and the `otel` extra is installed; otherwise off, at no cost (nothing is imported).

One trace per job: a `kontext.job` span (a child of the HTTP request's span when the web
framework traces requests) with a child span per phase:

    kontext.admission   validation, the prompt check and a place in the queue (sync jobs)
    kontext.decode      the input images decoded
    kontext.queue_wait  from the job's start until a device (or the upstream lane) takes it
    kontext.engine      the engine run; one `step` event per denoising step
    kontext.encode      the output encoded with its disclosure marks
    kontext.upstream    the call to the upstream API ([pro]/[max] jobs)

The service and the backends call a job's `JobTrace`; with tracing off every job gets
NO_TRACE, whose methods do nothing.

Turned on by OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
OTEL_TRACES_EXPORTER (`otlp` or `console`; `none` is off), unless OTEL_SDK_DISABLED=true.
The SDK reads the rest itself: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_PROTOCOL / _HEADERS / _TIMEOUT, OTEL_BSP_*.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.contract import EngineEvent

log = logging.getLogger(__name__)

SERVICE_NAME = "kontext-server"
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
#: The tracer while tracing is on (an opentelemetry Tracer), else None.
_tracer: Any = None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or any(environ.get(name, "").strip() for name in _ENDPOINTS)


def configure(environ: Mapping[str, str]) -> bool:
    """Turn tracing on as the OTEL_* variables in `environ` say; True when it is on.

    Without them nothing is imported. With them but without the `otel` extra, a warning
    says so and tracing stays off."""
    if not wanted(environ):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning("OTEL_* variables are set but OpenTelemetry is not installed (%s): "
                    "no traces; pip install 'kontext-server[otel]'", exc)
        return False
    named = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(_exporter(environ)))
    # Global too: libraries that trace on their own (the web framework's request spans)
    # join the same traces.
    trace.set_tracer_provider(provider)
    use(provider)
    log.info("tracing on: job phases are exported as OpenTelemetry spans")
    return True


def _exporter(environ: Mapping[str, str]) -> Any:
    """The span exporter OTEL_TRACES_EXPORTER and the OTLP protocol variables name."""
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()  # endpoint, headers, timeout: from the OTEL_* variables


def use(provider: Any) -> None:
    """Trace jobs to `provider` (an opentelemetry TracerProvider), or stop tracing (None).
    Tests hand it a provider with an in-memory exporter."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer(SERVICE_NAME)


def start_job(job_id: str) -> JobTrace:
    """The trace of a new job: NO_TRACE while tracing is off."""
    return NO_TRACE if _tracer is None else _JobSpans(_tracer, job_id)


class JobTrace:
    """A job's trace; this base does nothing (tracing off)."""

    def phase(self, name: str, **attributes: Any) -> contextlib.AbstractContextManager:
        """A span around one phase of the job (`with trace.phase("decode"):`)."""
        return _NOTHING

    def waiting(self) -> None:
        """The job waits for its device or lane (ends when the engine starts it)."""

    def engine_event(self, event: EngineEvent) -> None:
        """An engine event of the job: `started` ends the wait (and, on an engine, starts
        the engine span), each `step` is an event on the engine span."""

    def engine_ended(self) -> None:
        """The engine returned (its result or its error)."""

    def annotate(self, **attributes: Any) -> None:
        """Attributes of the job's span (its type, once validated)."""

    def end(self, error: Any = None) -> None:
        """The job ended, with `error` (an ApiError) or completed."""


NO_TRACE = JobTrace()
_NOTHING = contextlib.nullcontext()


class _JobSpans(JobTrace):
    """A job's spans: `kontext.job` and a child per phase."""

    def __init__(self, tracer: Any, job_id: str) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.tracer = tracer
        self.root = tracer.start_span("kontext.job", attributes=_attributes({"job_id": job_id}))
        self.context = trace.set_span_in_context(self.root)
        self.open: dict[str, Any] = {}

    def phase(self, name: str, **attributes: Any) -> contextlib.AbstractContextManager:
        self._close("engine")  # whatever follows the engine ends its span
        return self.tracer.start_as_current_span(
            f"kontext.{name}", context=self.context, attributes=_attributes(attributes))

    def _open(self, name: str, **attributes: Any) -> None:
        self._close(name)
        self.open[name] = self.tracer.start_span(
            f"kontext.{name}", context=self.context, attributes=_attributes(attributes))

    def _close(self, name: str) -> None:
        span = self.open.pop(name, None)
        if span is not None:
            span.end()

    def waiting(self) -> None:
        self._open("queue_wait")

    def engine_event(self, event: EngineEvent) -> None:
        if event.kind == "started":
            self._close("queue_wait")
            # A forwarded job "starts" on its upstream: its call is the upstream phase.
            if not (event.where or "").startswith("upstream"):
                self._open("engine", device=event.where)
        elif event.kind == "step" and "engine" in self.open:
            self.open["engine"].add_event("step", {"step": event.step, "steps": event.steps})

    def engine_ended(self) -> None:
        self._close("engine")

    def annotate(self, **attributes: Any) -> None:
        self.root.set_attributes(_attributes(attributes))

    def end(self, error: Any = None) -> None:
        for name in list(self.open):
            self._close(name)
        if error is not None:
            self.root.set_attribute("kontext.error", str(getattr(error, "reason", error)))
            self.root.set_status(self._trace.Status(self._trace.StatusCode.ERROR,
                                                    str(getattr(error, "message", error))))
        self.root.end()


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Span attributes under `kontext.`, without the unset ones (OpenTelemetry refuses
    None)."""
    return {key if "." in key else f"kontext.{key}": value
            for key, value in attributes.items() if value is not None}
