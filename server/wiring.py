"""The composition root: the engines, the lanes, the backends and the job service that one
set of settings describes. The server and `kontext batch --local` both build
their jobs path here, so a job means the same thing through either."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipelines.errors import WeightsError
from pipelines.types import Engine
from server.jobs.admission import Lane
from server.jobs.backend import Backend
from server.jobs.engine_pool import EnginePool
from server.jobs.engines import Engines
from server.jobs.fallback import FallbackBackend
from server.jobs.local import LocalBackend
from server.jobs.refusing import RefusingBackend
from server.jobs.screening import ContentScreen
from server.jobs.service import JobService
from server.jobs.work_ahead import WorkAhead
from server.media.c2pa_signing import C2paSigningError, load_c2pa_credentials
from server.media.decode import ImageLimits
from server.media.marks import OutputMarks
from server.metrics import Metrics
from server.settings import Settings

log = logging.getLogger(__name__)

NO_FILTER = (
    "NO CONTENT FILTER is active (safety off) on real FLUX.1 [dev] weights. The FLUX.1 [dev] "
    "Non-Commercial License, §2(e)(i), lets you create outputs only if you implement and "
    "maintain content filtering measures, or have every output reviewed by a person before it "
    "is distributed. Start with --safety block (or flag) once the classifier is on disk "
    "(weights/README.md), or make sure every output is reviewed. See docs/safety.md.")
NO_MARKS = (
    "AI DISCLOSURE MARKS ARE OFF (disclosure off): outputs carry no machine-readable 'made "
    "with AI' marks. The FLUX.1 [dev] Non-Commercial License, §2(e)(ii), asks that outputs "
    "disclose they were generated or modified with AI where the law requires it (e.g. the EU "
    "AI Act, Art. 50(2)). See docs/safety.md.")


class SafeguardsError(Exception):
    """The content filter or the C2PA credentials cannot be set up; the message says why."""


@dataclass(frozen=True)
class Safeguards:
    """The content filter (None: safety off) and the marks every output gets."""

    screen: ContentScreen | None
    marks: OutputMarks
    policy: str
    warnings: tuple[str, ...] = ()
    #: Said of the filter at startup and in /readyz (the demo classifier is one).
    note: str | None = None

    def status(self) -> dict[str, Any]:
        """/readyz's `safety` and `disclosure`, with the warnings the log gave at startup."""
        safety: dict[str, Any] = {"policy": self.policy,
                                  "checks": self.screen.describe() if self.screen else []}
        disclosure = self.marks.status()
        if self.note:
            safety["note"] = self.note
        if NO_FILTER in self.warnings:
            safety["warning"] = NO_FILTER
        if NO_MARKS in self.warnings:
            disclosure["warning"] = NO_MARKS
        return {"safety": safety, "disclosure": disclosure}


def _classifier(settings: Settings, demo: bool) -> tuple[str, str | None]:
    """The content filter's classifier, and a note when it is the demo one: in demo mode,
    unless --safety-model names another, a tiny classifier written beside the demo
    checkpoint (it flags mostly-red images), so the filter can be tried without weights."""
    if not demo or settings.safety_model != Settings.model_fields["safety_model"].default:
        return settings.safety_model, None
    from pipelines.safety.demo_classifier import DEMO_CLASSIFIER_NOTE, ensure_demo_classifier

    folder = ensure_demo_classifier(settings.demo_dir.parent / "demo-classifier")
    return str(folder), DEMO_CLASSIFIER_NOTE


def _content_screen(settings: Settings, model: str, metrics: Metrics) -> ContentScreen:
    """Load the content filter (torch and the classifier, now: never at import)."""
    from pipelines.safety import build_content_filter

    content_filter = build_content_filter(
        model=model, threshold=settings.safety_threshold,
        device=settings.safety_device, unsafe_labels=settings.safety_unsafe_labels,
        terms_file=settings.safety_terms_file)
    return ContentScreen(content_filter, settings.safety, settings.safety_threshold, metrics)


def build_safeguards(settings: Settings, demo: bool, metrics: Metrics) -> Safeguards:
    """The content filter and the output marks the settings ask for, each built once (the
    classifier loaded, the C2PA pair test-signed); SafeguardsError saying what is wrong."""
    try:
        screen, note = None, None
        if settings.safety != "off":
            model, note = _classifier(settings, demo)
            screen = _content_screen(settings, model, metrics)
        c2pa = None if settings.c2pa_cert is None or settings.c2pa_key is None else \
            load_c2pa_credentials(settings.c2pa_cert, settings.c2pa_key, settings.c2pa_tsa_url)
    except (WeightsError, C2paSigningError, ValueError, OSError) as exc:
        raise SafeguardsError(str(exc)) from exc
    warnings = tuple(text for text, applies in (
        (NO_FILTER, screen is None and not demo), (NO_MARKS, settings.disclosure == "off"),
    ) if applies)
    return Safeguards(screen, OutputMarks(settings.disclosure == "on",
                                          settings.disclosure_include_prompt, c2pa),
                      settings.safety, warnings, note)


def _announce(safeguards: Safeguards) -> None:
    """Say at startup what the filter and the marks do; the warnings loudly."""
    for text in safeguards.warnings:
        log.warning("\n%s\n%s\n%s", "!" * 78, text, "!" * 78)
    if safeguards.screen is not None:
        log.info("content filter (%s): %s", safeguards.policy,
                 "; ".join(safeguards.screen.describe()))
    if safeguards.note:
        log.warning("DEMO MODE: %s", safeguards.note)
    marks = safeguards.marks.status()
    log.info("disclosure marks %s (C2PA %s)", marks["marks"],
             "signed" if marks["c2pa"] else "not configured")


@dataclass
class JobsPath:
    """Everything between the routes and the engine."""

    service: JobService
    engines: Engines
    engine_lane: Lane
    queue_size: int
    safeguards: Safeguards

    @property
    def waiting(self) -> int:
        """Jobs waiting for the engines (admitted or in line), not counting running ones."""
        lane = self.engine_lane
        return max(0, lane.inside + lane.waiting - self.engines.busy_count)

    def queue_status(self) -> dict[str, int | bool]:
        """The engine queue's figures, for /readyz (`running`: a count with N devices)."""
        busy = self.engines.busy_count
        return {"waiting": self.waiting, "capacity": self.queue_size,
                "running": busy if self.engines.capacity > 1 else bool(busy)}


def engine_lane(settings: Settings, engines: Engines) -> Lane:
    """The line in front of the engines: `queue_size` waiting plus one running per device
    (its Retry-After, the work ahead, is bound once the service's jobs exist)."""
    return Lane("engine", settings.queue_size + engines.capacity, engines.seconds_until_free,
                f"the queue is full ({settings.queue_size} jobs waiting); retry later",
                share=settings.client_share)


def local_engines(settings: Settings, engine: Engine | list[Engine], metrics: Metrics,
                  labels: list[str] | None = None) -> EnginePool:
    """The pool of local engines: one engine (a single device) or one per device."""
    engines = engine if isinstance(engine, list) else [engine]
    return EnginePool(engines, labels, warmup=settings.warmup, metrics=metrics,
                      ready_devices=settings.ready_devices)


def build_jobs_path(settings: Settings, engines: Engines, metrics: Metrics) -> JobsPath:
    """The lanes, backends and service in front of `engines` under `settings`; raises
    SafeguardsError when the content filter or C2PA signing cannot be set up."""
    safeguards = build_safeguards(settings, engines.info.demo, metrics)
    _announce(safeguards)
    lane = engine_lane(settings, engines)
    local = LocalBackend(engines, lane, settings.job_timeout_seconds, settings.jpeg_quality,
                         safeguards.marks)
    backends: dict[str, Backend] = {
        "local": local, "upstream": upstream_backend(settings, local, metrics, safeguards.marks)}
    limits = ImageLimits(max_bytes=settings.max_input_bytes, downscale=settings.downscale_inputs)
    service = JobService(backends, metrics, limits, log_prompts=settings.log_prompts,
                         screen=safeguards.screen)
    work = WorkAhead(engines, service.jobs)
    lane.retry_after = lambda: work.until_start(lane.ids(), lane.reserved)
    return JobsPath(service, engines, lane, settings.queue_size, safeguards)


def _no_upstream(settings: Settings) -> str:
    return (f"no upstream is configured: start the server with --upstream hosted (token in "
            f"${settings.hosted_token_env}) or --upstream bfl (key in ${settings.bfl_key_env}),"
            " or with --fallback local to run [pro]/[max] jobs on the local [dev] model")


def _missing_credential(settings: Settings) -> str:
    env = settings.hosted_token_env if settings.upstream == "hosted" else settings.bfl_key_env
    return (f"--upstream {settings.upstream} needs its credential in the environment "
            f"variable {env}, which is unset or empty")


def upstream_backend(settings: Settings, local: LocalBackend, metrics: Metrics,
                     marks: OutputMarks) -> Backend:
    """The backend of [pro]/[max] jobs: forwarding, the local fallback, or a 503."""
    if settings.upstream == "none":
        if settings.fallback == "local":
            return FallbackBackend(local, settings.fallback_steps)
        return RefusingBackend(_no_upstream(settings))
    credential = settings.upstream_credential()
    if credential is None:
        log.warning("%s; [pro]/[max] jobs will be answered 503", _missing_credential(settings))
        return RefusingBackend(_missing_credential(settings))
    from server.upstream.forwarding import ForwardingBackend

    if settings.upstream == "hosted":
        from server.upstream.hosted import HostedForwarder

        return ForwardingBackend(HostedForwarder(settings, credential), settings, metrics,
                                 marks)
    from server.upstream.bfl import BflForwarder

    return ForwardingBackend(BflForwarder(settings, credential), settings, metrics, marks)
