"""The job record and its JSON form (the `job` part / application/json body)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

State = Literal["queued", "processing", "completed", "failed"]
#: The hosted API keeps a job for five minutes.
JOB_LIFETIME = timedelta(minutes=5)


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds and Z, as the hosted API writes it."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class JobRecord:
    """One job as the wire sees it. `extra` holds top-level additions (e.g. a demo notice)."""

    type: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: datetime = field(default_factory=now)
    updated_at: datetime | None = None
    state: State = "queued"
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    error: str | None = None
    price: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: How long the job is kept: the hosted API's 5 minutes, or the async retention.
    lifetime: timedelta = JOB_LIFETIME

    @property
    def expires_at(self) -> datetime:
        """When the job is forgotten: created_at + lifetime."""
        return self.created_at + self.lifetime

    def touch(self, state: State) -> None:
        """Move to `state` now."""
        self.state = state
        self.updated_at = now()

    def complete(self, metrics: dict[str, Any]) -> None:
        """Mark completed with its metrics."""
        self.metrics = metrics
        self.touch("completed")

    def fail(self, error: str) -> None:
        """Mark failed with a human-readable error."""
        self.error = error
        self.touch("failed")

    def to_json(self) -> dict[str, Any]:
        """The job JSON of the wire contract."""
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at or self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "state": {"current": self.state},
            "config": self.config,
        }
        if self.metrics is not None:
            body["metrics"] = self.metrics
        if self.price is not None:
            body["price"] = self.price
        if self.error is not None:
            body["error"] = self.error
        body.update(self.extra)
        return body
