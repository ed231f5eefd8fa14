"""The jobs in flight on any backend: counted for /metrics, timed, and cancellable at shutdown."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from server.backend import PreparedJob
from server.errors import ApiError
from server.metrics import Metrics


class JobTracker:
    """Knows every job between acceptance and its end, whichever route or backend runs it."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.jobs: dict[str, PreparedJob] = {}

    @property
    def in_flight(self) -> int:
        """Jobs accepted and not finished."""
        return len(self.jobs)

    @contextlib.contextmanager
    def track(self, job: PreparedJob, tier: str) -> Iterator[None]:
        """Count `job` in flight while the block runs; time it by type, tier and outcome."""
        started = time.monotonic()
        self.jobs[job.record.id] = job
        self.metrics.in_flight.inc()
        outcome = "completed"
        try:
            yield
        except ApiError as exc:
            outcome = exc.reason
            raise
        except BaseException:
            outcome = "internal"
            raise
        finally:
            self.jobs.pop(job.record.id, None)
            self.metrics.in_flight.dec()
            self.metrics.job_seconds.labels(
                job_type=job.job_type.name, tier=tier, outcome=outcome,
            ).observe(time.monotonic() - started)

    def cancel_all(self) -> None:
        """Ask every job in flight to stop (backends watch their RunControl)."""
        for job in list(self.jobs.values()):
            job.control.cancel.set()
