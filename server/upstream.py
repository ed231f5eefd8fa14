"""The `upstream` backend of [pro]/[max] jobs, chosen once from the settings.

`--upstream hosted` or `bfl` forwards them (bounded in-flight, never behind GPU jobs);
`--upstream none` answers 503 naming what to configure, unless `--fallback local` runs them
on the local [dev] model. Every variant validates the input image first, locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Iterator
from typing import Protocol

from server.accept import ImageFormat
from server.backend import ClientGone, JobBackend, Output, PreparedJob
from server.errors import ApiError, NotReady, Overloaded, UpstreamTimeout
from server.errors import ClientGone as ClientGoneError
from server.images import ImageLimits, decode_input_image
from server.metrics import record_upstream_outcome
from server.settings import Settings
from server.worker import EngineWorker

log = logging.getLogger(__name__)


class Forwarder(Protocol):
    """Talks to one upstream API."""

    async def forward(self, job: PreparedJob, fmt: ImageFormat) -> Output:
        """Run `job` upstream; fill job.record; raise ApiError on failure."""

    async def aclose(self) -> None:
        """Close the HTTP client."""


class InFlightLimit:
    """A bound on forwarded jobs in flight, separate from the GPU queue; full → 429."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        # A guess until one job has finished; then a moving average of real durations.
        self.mean_seconds = 5.0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the body of the `with`, or raise Overloaded at once."""
        if self.count >= self.size:
            raise Overloaded(f"{self.size} forwarded jobs are in flight already; retry later",
                             retry_after=math.ceil(self.mean_seconds))
        self.count += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.count -= 1
            self.mean_seconds = 0.7 * self.mean_seconds + 0.3 * (time.monotonic() - started)


async def check_input(job: PreparedJob, limits: ImageLimits) -> None:
    """Decode the input image, if any, under the dev image rules (400 on failure)."""
    if job.inputs:
        await asyncio.to_thread(decode_input_image, job.inputs[0], "input", limits)


async def until_gone(work: Awaitable[Output], client_gone: ClientGone | None,
                     seconds: float) -> Output:
    """`work`'s result, cancelling it if the client leaves or `seconds` pass."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(client_gone()) if client_gone else None
    try:
        waiters = {task} | ({watcher} if watcher else set())
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        if watcher is not None and watcher.done():
            raise ClientGoneError("the client disconnected; the forwarded job was abandoned")
        raise UpstreamTimeout(f"the forwarded job took longer than {seconds:g} s in all")
    finally:
        if watcher is not None:
            watcher.cancel()


class ForwardingBackend:
    """Validates, bounds and times a forwarded job; the Forwarder does the talking."""

    def __init__(self, forwarder: Forwarder, settings: Settings) -> None:
        self.forwarder = forwarder
        self.limit = InFlightLimit(settings.upstream_max_in_flight)
        self.limits = ImageLimits(max_bytes=settings.max_input_bytes)
        self.job_timeout = settings.upstream_job_timeout
        self.kind = settings.upstream

    async def run(self, job: PreparedJob, fmt: ImageFormat,
                  client_gone: ClientGone | None) -> Output:
        """Check the input, take an in-flight slot, forward within the job timeout."""
        await check_input(job, self.limits)
        with self.limit.slot():
            try:
                output = await until_gone(self.forwarder.forward(job, fmt), client_gone,
                                          self.job_timeout)
            except ApiError as exc:
                record_upstream_outcome(exc.reason, backend=self.kind)
                raise
        record_upstream_outcome("ok", backend=self.kind)
        return output

    async def aclose(self) -> None:
        """Close the forwarder's HTTP client."""
        await self.forwarder.aclose()


class RefusingBackend:
    """No upstream is usable: answers 503 naming the configuration that is missing."""

    def __init__(self, reason: str, settings: Settings) -> None:
        self.reason = reason
        self.limits = ImageLimits(max_bytes=settings.max_input_bytes)

    async def run(self, job: PreparedJob, fmt: ImageFormat,
                  client_gone: ClientGone | None) -> Output:
        """Validate (a bad job is still a 400), then refuse."""
        await check_input(job, self.limits)
        raise NotReady(f"{job.job_type.name} cannot run here: {self.reason}")


def _missing_credential(settings: Settings) -> str:
    env = settings.hosted_token_env if settings.upstream == "hosted" else settings.bfl_key_env
    return (f"--upstream {settings.upstream} needs its credential in the environment "
            f"variable {env}, which is unset or empty")


def _no_upstream(settings: Settings) -> str:
    return (f"no upstream is configured: start the server with --upstream hosted (token in "
            f"${settings.hosted_token_env}) or --upstream bfl (key in ${settings.bfl_key_env}),"
            " or with --fallback local to run [pro]/[max] jobs on the local [dev] model")


def make_upstream_backend(settings: Settings, worker: EngineWorker, demo: bool) -> JobBackend:
    """The backend for [pro]/[max] jobs under these settings."""
    if settings.upstream == "none":
        if settings.fallback == "local":
            from server.fallback_backend import FallbackBackend

            return FallbackBackend(worker, settings, demo)
        return RefusingBackend(_no_upstream(settings), settings)
    credential = settings.upstream_credential()
    if credential is None:
        log.warning("%s; [pro]/[max] jobs will be answered 503", _missing_credential(settings))
        return RefusingBackend(_missing_credential(settings), settings)
    if settings.upstream == "hosted":
        from server.upstream_hosted import HostedForwarder

        return ForwardingBackend(HostedForwarder(settings, credential), settings)
    from server.upstream_bfl import BflForwarder

    return ForwardingBackend(BflForwarder(settings, credential), settings)
