"""The results folder's quota: a size limit and a free-space reserve on its disk.

Checked before an async job's body is read. Over either, expired jobs are deleted at once
(expiry first: nothing else is ever evicted, so no finished result is lost) and, if that
was not enough, the job is answered 507 with a Retry-After of the next periodic cleanup.
Jobs already admitted still write their outputs: the limit can be passed by at most the
outputs of the async jobs unfinished at that moment (async_queue_size of them).
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from server.asyncjobs.store import JobStore
from server.errors import StorageFull

log = logging.getLogger(__name__)

#: Deleting expired jobs because of the quota happens at most this often (it walks the folder).
CLEAN_AT_MOST_EVERY = 1.0


def free_bytes(root: Path) -> int:
    """Free bytes on the disk holding `root` (or its nearest existing parent)."""
    path = root
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


class ResultsQuota:
    """The limits of one results folder. Jobs past `retention` are deleted when over them,
    except those `keep()` names (still running)."""

    def __init__(self, store: JobStore, max_bytes: int, min_free_bytes: int,
                 retention: timedelta, keep: Callable[[], set[str]],
                 retry_after: float) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self._retention = retention
        self._keep = keep
        self._retry_after = max(1, math.ceil(retry_after))
        self._cleaned_at = -math.inf

    def refusal(self) -> StorageFull | None:
        """Why a new async job cannot be stored now, or None."""
        used = self.store.used_bytes
        if used >= self.max_bytes:
            return StorageFull(
                f"the results folder holds {used} bytes, at its {self.max_bytes}-byte limit "
                "(results_max_bytes); finished jobs are deleted when they expire",
                self._retry_after)
        free = free_bytes(self.store.root)
        if free < self.min_free_bytes:
            return StorageFull(
                f"the results folder's disk has {free} bytes free, under its "
                f"{self.min_free_bytes}-byte reserve (results_min_free_bytes)",
                self._retry_after)
        return None

    async def check(self) -> None:
        """Raise StorageFull (507) when over a limit even after deleting expired jobs."""
        if self.refusal() is None:
            return
        if time.monotonic() - self._cleaned_at >= CLEAN_AT_MOST_EVERY:
            self._cleaned_at = time.monotonic()
            deleted = await asyncio.to_thread(self.store.delete_expired, self._retention,
                                              self._keep())
            log.info("results folder over its quota: deleted %d expired job(s)", deleted)
        refusal = self.refusal()
        if refusal is not None:
            log.warning("async job refused: %s", refusal.message)
            raise refusal
