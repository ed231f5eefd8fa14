"""Async jobs on disk: one folder per job holding its record (`job.json`) and its outputs.

Every file is written to a temporary name and moved into place with os.replace, so a
crash leaves either the old file or the new one, never half of one. A record says
`completed` only after its output file is in place.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server.atomic_files import write_atomic
from server.jobs.record import now, rfc3339

log = logging.getLogger(__name__)

RECORD = "job.json"
#: Job ids are uuid4 strings; anything else never reaches the file system.
JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: Output names are ours (output.jpg …); this refuses paths and dot files.
OUTPUT_NAME = re.compile(r"^[A-Za-z0-9_-]+\.[a-z]+$")
UNFINISHED = ("queued", "processing")


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp as written by jobs.rfc3339."""
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass
class StoredJob:
    """A job record as kept on disk: the job JSON, the names of its output files, and its
    owner (a token's fingerprint, jobs/owners.py; None without tokens)."""

    job: dict[str, Any]
    outputs: list[str] = field(default_factory=list)
    owner: str | None = None

    @property
    def id(self) -> str:
        """The job id."""
        return self.job["id"]

    @property
    def state(self) -> str:
        """The job's state.current (queued, processing, completed, failed)."""
        return self.job["state"]["current"]

    @property
    def expires_at(self) -> datetime:
        """When the job and its outputs are forgotten."""
        return parse_time(self.job["expires_at"])

    def expired(self, moment: datetime | None = None) -> bool:
        """Whether the job is past its expires_at."""
        return self.expires_at <= (moment or now())


class JobStore:
    """The results folder. Creates it on the first write, so unused servers leave no trace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: Bytes the folder holds: measured at startup and after each cleanup, counted up
        #: on every write in between (rewritten records counted again: an over-estimate).
        self.used_bytes = 0

    def measure(self) -> int:
        """Sum the sizes of every file in the job folders (and remember it)."""
        total = 0
        for folder in self._folders():
            for path in folder.iterdir():
                try:
                    total += path.stat().st_size
                except OSError:
                    continue  # deleted meanwhile
        self.used_bytes = total
        return total

    def _folder(self, job_id: str) -> Path | None:
        return self.root / job_id if JOB_ID.match(job_id) else None

    def save(self, stored: StoredJob) -> None:
        """Write (or replace) a job's record."""
        folder = self._folder(stored.id)
        if folder is None:
            raise ValueError(f"not a job id: {stored.id!r}")
        data = json.dumps({"job": stored.job, "outputs": stored.outputs,
                           "owner": stored.owner}).encode()
        write_atomic(folder / RECORD, data, durable=False)
        self.used_bytes += len(data)

    def write_output(self, job_id: str, name: str, data: bytes) -> None:
        """Write one output file of a job (before its record names it)."""
        folder = self._folder(job_id)
        if folder is None or not OUTPUT_NAME.match(name):
            raise ValueError(f"bad output {job_id!r}/{name!r}")
        write_atomic(folder / name, data)
        self.used_bytes += len(data)

    def load(self, job_id: str) -> StoredJob | None:
        """The job's record, or None when there is none (or it cannot be read)."""
        folder = self._folder(job_id)
        if folder is None:
            return None
        return self._read(folder / RECORD)

    def output_path(self, stored: StoredJob, name: str) -> Path | None:
        """The path of an output file the record names, or None."""
        folder = self._folder(stored.id)
        if folder is None or name not in stored.outputs:
            return None
        path = folder / name
        return path if path.is_file() else None

    def delete(self, job_id: str) -> None:
        """Remove a job's folder and everything in it."""
        folder = self._folder(job_id)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _read(self, path: Path) -> StoredJob | None:
        try:
            data = json.loads(path.read_bytes())
            stored = StoredJob(data["job"], list(data.get("outputs", [])), data.get("owner"))
            stored.expires_at  # noqa: B018 - a record without a valid expiry is unusable
            return stored
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable job record %s: %s", path, exc)
            return None

    def _folders(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.is_dir() and JOB_ID.match(folder.name):
                yield folder

    def fail_unfinished(self, reason: str) -> int:
        """Mark every queued or processing record failed with `reason`; how many there were.

        Run at startup: such records belong to a server process that is gone.
        """
        count = 0
        for folder in self._folders():
            stored = self._read(folder / RECORD)
            if stored is None or stored.state not in UNFINISHED:
                continue
            stored.job["state"] = {"current": "failed"}
            stored.job["error"] = reason
            stored.job["updated_at"] = rfc3339(now())
            self.save(stored)
            count += 1
        self.measure()
        return count

    def delete_expired(self, retention: timedelta, keep: set[str] | frozenset = frozenset()
                       ) -> int:
        """Delete jobs past their expiry, and record-less leftovers older than `retention`.

        Jobs in `keep` (still running) stay whatever their expiry.
        """
        moment, count = now(), 0
        for folder in self._folders():
            if folder.name in keep:
                continue
            stored = self._read(folder / RECORD)
            if stored is None:
                # A crash between creating the folder and writing the record leaves this.
                modified = datetime.fromtimestamp(folder.stat().st_mtime, UTC)
                if modified + retention > moment:
                    continue
            elif not stored.expired(moment):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            count += 1
        self.measure()
        return count
