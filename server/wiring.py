"""The composition root: the engines, the lanes, the backends, the job service and the one
server object that a set of settings describes. The server (`build_server`) and
`kontext batch --local` (`local_jobs`) both build their jobs path here, so a job means the
same thing through either."""

from __future__ import annotations

import logging

from pipelines.errors import WeightsError
from server.asyncjobs.jobs import AsyncJobs
from server.composed import NO_FILTER, NO_MARKS, JobsPath, Safeguards, Server
from server.engine_build import build_engine, build_local_engines
from server.engines.interface import Engine, Engines
from server.engines.pool import EnginePool
from server.jobs.admission import Lane
from server.jobs.backends.base import Backend
from server.jobs.backends.fallback import FallbackBackend
from server.jobs.backends.local import LocalBackend
from server.jobs.backends.refusing import RefusingBackend
from server.jobs.screening import ContentScreen
from server.jobs.service import JobService
from server.jobs.shutdown import ShutdownController
from server.jobs.uploads import UploadBudget
from server.jobs.work_ahead import WorkAhead
from server.media.c2pa_signing import C2paSigningError, load_c2pa_credentials
from server.media.decode import ImageLimits
from server.media.marks import OutputMarks
from server.metrics import Metrics
from server.settings import Settings
from server.settings.tokens import TokenChecker, configured_tokens

log = logging.getLogger(__name__)

class SafeguardsError(Exception):
    """The content filter or the C2PA credentials cannot be set up; the message says why."""


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


def engine_lane(settings: Settings, engines: Engines) -> Lane:
    """The line in front of the engines: `queue_size` waiting plus one running per device
    (its Retry-After, the work ahead, is bound once the service's jobs exist)."""
    return Lane("engine", settings.queue_size + engines.capacity, engines.seconds_until_free,
                f"the queue is full ({settings.queue_size} jobs waiting); retry later",
                share=settings.client_share)


def local_engines(settings: Settings, engine: Engine | list[Engine] | None, metrics: Metrics,
                  labels: list[str] | None = None) -> EnginePool:
    """The pool of local engines: one engine (a single device), one per device, or (None)
    the ones the settings ask for (--device, --devices)."""
    if engine is None:
        engine, labels = build_local_engines(settings)
        if settings.demo:
            log.warning("DEMO MODE: tiny random weights on %s; every image is noise, not an "
                        "edit", ", ".join(labels))
    engines = engine if isinstance(engine, list) else [engine]
    return EnginePool(engines, labels, warmup=settings.warmup, metrics=metrics,
                      ready_devices=settings.ready_devices)


def local_jobs(settings: Settings) -> JobsPath:
    """The jobs path of `kontext batch --local` and `kontext edit --local`: the settings'
    engine in this process, not warmed up (the first row pays the first-call costs once,
    like a warm-up). WeightsError for bad --weights, before any load."""
    engine = build_engine(settings)
    settings = settings.model_copy(update={"warmup": False})
    metrics = Metrics()
    return build_jobs_path(settings, local_engines(settings, engine, metrics), metrics)


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


def build_server(settings: Settings, engine: Engine | list[Engine] | None = None, *,
                 engines: Engines | None = None, labels: list[str] | None = None,
                 shared_results: bool = False) -> Server:
    """The server for `settings`, around local engines (one, one per device, or None: the
    ones the settings ask for; `labels` name their devices) or around `engines` that run
    elsewhere (Ray Serve). `shared_results`: other servers use results_dir too. Raises
    EngineError (bad weights or devices) and SafeguardsError."""
    metrics = Metrics()
    if engines is None:
        engines = local_engines(settings, engine, metrics, labels)
    path = build_jobs_path(settings, engines, metrics)
    metrics.watch_queue(lambda: path.waiting)
    metrics.watch_loras(lambda: engines.loras)
    metrics.watch_build(lambda: engines.info)
    return Server(
        settings, metrics, path,
        # Unfinished async jobs wait for the engines: their line's Retry-After is the work
        # ahead there.
        AsyncJobs(path.service, settings, path.engine_lane.retry_after,
                  recover=not shared_results),
        ShutdownController(path.service, settings.shutdown_grace_seconds),
        TokenChecker(configured_tokens(settings), settings.open_probes,
                     frozenset(settings.admin_tokens)),
        UploadBudget(settings.max_body_bytes_in_flight, settings.client_share))


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
    from server.jobs.backends.forwarding import ForwardingBackend

    if settings.upstream == "hosted":
        from server.upstream.hosted import HostedForwarder

        return ForwardingBackend(HostedForwarder(settings, credential), settings, metrics,
                                 marks)
    from server.upstream.bfl import BflForwarder

    return ForwardingBackend(BflForwarder(settings, credential), settings, metrics, marks)
