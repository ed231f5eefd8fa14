"""The job record and its JSON form (the `job` part / application/json body), and the one
state machine every job follows: queued → processing → completed | failed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

State = Literal["queued", "processing", "completed", "failed"]
#: The hosted API keeps a job for five minutes.
JOB_LIFETIME = timedelta(minutes=5)
#: The moves a job may make; a final state has none.
TRANSITIONS: dict[State, frozenset[State]] = {
    "queued": frozenset({"processing", "failed"}),
    "processing": frozenset({"completed", "failed"}),
    "completed": frozenset(),
    "failed": frozenset(),
}


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds and Z, as the hosted API writes it."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_job_id() -> str:
    """A fresh job id (uuid4, as the hosted API uses)."""
    return str(uuid.uuid4())


class IllegalTransition(RuntimeError):
    """A programming error: a job was moved against the state machine."""


@dataclass
class JobRecord:
    """One job as the wire sees it. `extra` holds top-level additions (notice, served_by).

    Only the job service moves it (through `move`), so its state follows TRANSITIONS.
    """

    type: str
    id: str = field(default_factory=new_job_id)
    created_at: datetime = field(default_factory=now)
    updated_at: datetime | None = None
    #: When it left the queue and started running (None while queued, or never run).
    started_at: datetime | None = None
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

    @property
    def finished(self) -> bool:
        """Whether the job is completed or failed."""
        return not TRANSITIONS[self.state]

    def move(self, state: State) -> None:
        """Move to `state` now; IllegalTransition if the state machine forbids it."""
        if state not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"job {self.id}: {self.state} → {state}")
        self.state = state
        self.updated_at = now()
        if state == "processing":
            self.started_at = self.updated_at

    def to_json(self) -> dict[str, Any]:
        """The job JSON of the wire contract."""
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at or self.created_at),
            "expires_at": rfc3339(self.expires_at),
            **({"started_at": rfc3339(self.started_at)} if self.started_at else {}),
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


def refused_record(job_id: str, error: str, job_type: str | None = None,
                   config: dict[str, Any] | None = None) -> JobRecord:
    """The failed record of a request refused before it became a job (e.g. a 400).

    It echoes the type and config as far as they were read, so a client sees what it sent.
    """
    record = JobRecord(type=job_type or "unknown", id=job_id, config=dict(config or {}))
    record.error = error
    record.move("failed")
    return record
