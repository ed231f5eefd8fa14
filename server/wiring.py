"""The composition root: the engines, the lanes, the backends and the job service that one
set of settings describes. The server and `kontext batch --local` both build
their jobs path here, so a job means the same thing through either."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipelines.types import Engine
from server.jobs.admission import Lane
from server.jobs.backend import Backend
from server.jobs.engine_pool import EnginePool
from server.jobs.engines import Engines
from server.jobs.fallback import FallbackBackend
from server.jobs.local import LocalBackend
from server.jobs.refusing import RefusingBackend
from server.jobs.service import JobService
from server.media.decode import ImageLimits
from server.metrics import Metrics
from server.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class JobsPath:
    """Everything between the routes and the engine."""

    service: JobService
    engines: Engines
    engine_lane: Lane
    queue_size: int

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
    """The line in front of the engines: `queue_size` waiting plus one running per device."""
    return Lane("engine", settings.queue_size + engines.capacity, engines.seconds_until_free,
                f"the queue is full ({settings.queue_size} jobs waiting); retry later")


def local_engines(settings: Settings, engine: Engine | list[Engine], metrics: Metrics,
                  labels: list[str] | None = None) -> EnginePool:
    """The pool of local engines: one engine (a single device) or one per device."""
    engines = engine if isinstance(engine, list) else [engine]
    return EnginePool(engines, labels, warmup=settings.warmup, metrics=metrics,
                      ready_devices=settings.ready_devices)


def build_jobs_path(settings: Settings, engines: Engines, metrics: Metrics) -> JobsPath:
    """The lanes, backends and service in front of `engines` under `settings`."""
    lane = engine_lane(settings, engines)
    local = LocalBackend(engines, lane, settings.job_timeout_seconds, settings.jpeg_quality)
    backends: dict[str, Backend] = {"local": local,
                                    "upstream": upstream_backend(settings, local, metrics)}
    service = JobService(backends, metrics, ImageLimits(max_bytes=settings.max_input_bytes),
                         log_prompts=settings.log_prompts)
    return JobsPath(service, engines, lane, settings.queue_size)


def _no_upstream(settings: Settings) -> str:
    return (f"no upstream is configured: start the server with --upstream hosted (token in "
            f"${settings.hosted_token_env}) or --upstream bfl (key in ${settings.bfl_key_env}),"
            " or with --fallback local to run [pro]/[max] jobs on the local [dev] model")


def _missing_credential(settings: Settings) -> str:
    env = settings.hosted_token_env if settings.upstream == "hosted" else settings.bfl_key_env
    return (f"--upstream {settings.upstream} needs its credential in the environment "
            f"variable {env}, which is unset or empty")


def upstream_backend(settings: Settings, local: LocalBackend, metrics: Metrics) -> Backend:
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

        return ForwardingBackend(HostedForwarder(settings, credential), settings, metrics)
    from server.upstream.bfl import BflForwarder

    return ForwardingBackend(BflForwarder(settings, credential), settings, metrics)
