"""Prometheus metrics, one registry per app (several test servers share a process).

Failed answers are counted by the request middleware, with the reason `error_response`
notes (through a context variable the middleware sets); jobs are timed by the job service,
step times come from the engine worker, upstream outcomes from the forwarding backend,
content-filter findings from the job's screening.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from pipelines.contract import EngineInfo, LoraCatalog

# No `*_created` series beside every counter and histogram: they double the series count
# and no dashboard or alert here reads them (process-wide: prometheus_client's own switch).
disable_created_metrics()

JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300, 600)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10)
SWITCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The server's metrics in their own CollectorRegistry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("kontext_queue_depth", "Jobs waiting for the engine.",
                                 registry=r)
        self.in_flight = Gauge("kontext_jobs_in_flight",
                               "Jobs accepted and not yet finished, on any backend.", registry=r)
        self.job_seconds = Histogram(
            "kontext_job_duration_seconds",
            "Time from acceptance to the end of a job, by job type, model (the local model "
            "family, or `upstream`), tier and outcome (`completed` or the failure reason).",
            ["job_type", "model", "tier", "outcome"], buckets=JOB_BUCKETS, registry=r)
        self.step_seconds = Histogram(
            "kontext_denoise_step_seconds",
            "Mean denoising step time of each completed local job, by device and model.",
            ["device", "model"], buckets=STEP_BUCKETS, registry=r)
        self.device_jobs = Counter(
            "kontext_device_jobs", "Jobs run on each device, by outcome (`completed` or "
            "the failure reason).", ["device", "outcome"], registry=r)
        self.requests = Counter(
            "kontext_http_requests",
            "Every answer, by route (its template, e.g. /v2/job/async/{job_id}; `unmatched` "
            "for a path no route serves, `edge` for the HTTP edge's own refusals) and HTTP "
            "status: the denominator of error ratios.", ["route", "status"], registry=r)
        self.errors = Counter("kontext_http_errors",
                              "Failed requests by HTTP status and reason (a /readyz 503 "
                              "is not one: see kontext_readiness_probes).",
                              ["status", "reason"], registry=r)
        self.content_flags = Counter(
            "kontext_content_flags",
            "Content-filter findings, by checkpoint (prompt, input, output), category and "
            "policy (block: refused; flag: served and marked).",
            ["checkpoint", "category", "policy"], registry=r)
        self.content_check_seconds = Histogram(
            "kontext_content_check_seconds",
            "Time of one content-filter check, by checkpoint.", ["checkpoint"],
            buckets=STEP_BUCKETS, registry=r)
        self.readiness = Counter("kontext_readiness_probes",
                                 "Answers of /readyz by readiness; ready=\"false\" (503) is "
                                 "expected while the engine loads, warms up or drains.",
                                 ["ready"], registry=r)
        self.upstream = Counter("kontext_upstream_outcomes",
                                "Answers from upstream APIs, by backend and outcome.",
                                ["backend", "outcome"], registry=r)
        self.lora_switch_seconds = Histogram(
            "kontext_lora_switch_seconds",
            "Time to switch a job's LoRAs in (files read on a cache miss, copies into the "
            "slots), for jobs that name LoRAs.", buckets=SWITCH_BUCKETS, registry=r)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Read the queue depth from `depth()` at every scrape."""
        self.queue_depth.set_function(depth)

    def watch_devices(self, workers: list) -> None:
        """Per device (each worker's `label`): 1 while it runs a job, 0 when idle; and on
        CUDA engines in this process, the bytes of GPU memory torch has allocated."""
        busy = Gauge("kontext_device_busy", "1 while the device runs a job.", ["device"],
                     registry=self.registry)
        memory: Gauge | None = None
        for worker in workers:
            busy.labels(device=worker.label).set_function(lambda w=worker: float(w.busy))
            device = worker.engine.info.device
            # Engines in child processes hold their memory there: no gauge from here.
            if not device.startswith("cuda") or hasattr(worker.engine, "pid"):
                continue
            if memory is None:
                memory = Gauge("kontext_gpu_memory_allocated_bytes",
                               "GPU memory allocated by torch on the engine's device.",
                               ["device"], registry=self.registry)
            memory.labels(device=worker.label).set_function(
                lambda d=device: _cuda_memory_allocated(d))

    def watch_loras(self, catalog: Callable[[], LoraCatalog | None]) -> None:
        """Export the LoRA adapter cache's counters, read from `catalog()` at every scrape."""
        self.registry.register(_LoraCacheCollector(catalog))

    def count_upstream(self, backend: str, outcome: str) -> None:
        """Count one answer from an upstream API (outcome "ok" or the failure reason)."""
        self.upstream.labels(backend=backend, outcome=outcome).inc()

    def count_content_check(self, checkpoint: str, seconds: float,
                            categories: tuple[str, ...], policy: str) -> None:
        """Time one content-filter check and count what it flagged."""
        self.content_check_seconds.labels(checkpoint=checkpoint).observe(seconds)
        for category in categories:
            self.content_flags.labels(checkpoint=checkpoint, category=category,
                                      policy=policy).inc()

    def count_readiness(self, ready: bool) -> None:
        """Count one /readyz answer; a not-ready one is not counted as a failed request."""
        self.readiness.labels(ready=str(ready).lower()).inc()
        request = current_request.get()
        if request is not None and not ready:
            request.expected = True

    def count_error(self, status: int, reason: str) -> None:
        """Count one failed request."""
        self.errors.labels(status=str(status), reason=reason).inc()

    def count_request(self, route: str, status: int) -> None:
        """Count one answer (any status) on `route`, a route template."""
        self.requests.labels(route=route, status=str(status)).inc()

    def watch_build(self, info: Callable[[], EngineInfo]) -> None:
        """kontext_build_info: this server's version and what its engines run, read from
        `info()` at every scrape (the device and tier are known once the engine loaded)."""
        self.registry.register(_BuildInfoCollector(info))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _cuda_memory_allocated(device: str) -> float:
    import torch  # lazily: only CUDA engines register this gauge, and torch is loaded there

    return float(torch.cuda.memory_allocated(device))


def server_version() -> str:
    """The installed kontext-server version (`unknown` when run from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kontext-server")
    except PackageNotFoundError:
        return "unknown"


class _BuildInfoCollector:
    """kontext_build_info{version, model, tier, device} 1: join it to other series to tell
    which build and engine produced them."""

    def __init__(self, info: Callable[[], EngineInfo]) -> None:
        self.info = info
        self.version = server_version()

    def collect(self) -> Iterator[Metric]:
        info = self.info()
        yield InfoMetricFamily(
            "kontext_build", "The server's version and what its engine runs (always 1).",
            value={"version": self.version, "model": info.model, "tier": info.tier,
                   "device": info.device})


class _LoraCacheCollector:
    """kontext_lora_cache_*: one stats() snapshot per scrape, so the figures agree."""

    def __init__(self, catalog: Callable[[], LoraCatalog | None]) -> None:
        self.catalog = catalog

    def collect(self) -> Iterator[Metric]:
        catalog = self.catalog()
        if catalog is None:  # no LoRA folder: nothing to export
            return
        stats = catalog.stats()
        for name, value, text in (
                ("hits", stats.hits, "LoRAs of jobs found in the in-memory adapter cache."),
                ("misses", stats.misses, "LoRAs of jobs read from disk into the cache."),
                ("evictions", stats.evictions, "Adapters evicted to keep the cache's bound.")):
            yield CounterMetricFamily(f"kontext_lora_cache_{name}", text, value=value)
        for name, value, text in (
                ("bytes", stats.bytes, "Host memory held by cached LoRA adapters."),
                ("capacity_bytes", stats.capacity_bytes, "The adapter cache's bound in bytes."),
                ("entries", stats.entries, "LoRA adapters in the cache.")):
            yield GaugeMetricFamily(f"kontext_lora_cache_{name}", text, value=value)


@dataclass
class RequestMetrics:
    """What the request middleware knows of the request being handled."""

    metrics: Metrics
    #: The ApiError reason of a failed answer, noted where errors are rendered.
    error_reason: str | None = None
    #: The 4xx/5xx status is an expected state, not a failure (/readyz while starting).
    expected: bool = False


current_request: contextvars.ContextVar[RequestMetrics | None] = contextvars.ContextVar(
    "current_request_metrics", default=None)


def note_error_reason(reason: str) -> None:
    """Remember why the current request failed; the middleware counts it with its status."""
    request = current_request.get()
    if request is not None:
        request.error_reason = reason
