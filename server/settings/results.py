"""Settings of async jobs and of their results folder on disk (retention, quota)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from server.settings.common import MB, Size, default_cache_dir


class ResultsSettings(BaseModel):
    """Async jobs (POST /v2/job/async) and their results on disk, with a quota (issues 5, 16)."""

    results_dir: Path = Field(
        default_factory=lambda: default_cache_dir() / "results",
        description="Where async jobs' records and outputs are kept, so a restart loses no "
        "finished result (created on first use).",
    )
    results_retention_seconds: float = Field(
        24 * 3600.0, gt=0,
        description="How long an async job and its outputs are kept after it was created (its "
        "expires_at); then it answers 404 and is deleted.",
    )
    results_cleanup_seconds: float = Field(
        60.0, gt=0, description="How often expired async jobs are deleted from results_dir."
    )
    async_queue_size: int = Field(
        64, ge=1,
        description="Async jobs that may be unfinished at once; past this, POST /v2/job/async "
        "answers 429 with Retry-After.",
    )
    results_max_bytes: Size = Field(
        10 * 1024 * MB, ge=1024 * 1024,
        description="Most bytes the results folder may hold; past this (after deleting expired "
        "jobs), POST /v2/job/async answers 507 before reading the request.",
    )
    results_min_free_bytes: Size = Field(
        1024 * MB, ge=0,
        description="Free space to leave on the results folder's disk; with less (after "
        "deleting expired jobs), POST /v2/job/async answers 507 before reading the request.",
    )
