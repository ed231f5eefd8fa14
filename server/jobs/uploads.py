"""The memory of request bodies being read at once, bounded (max_body_bytes_in_flight).

A request takes its declared size from the budget before its body is read and gives it
back once the body is parsed; one that does not fit is answered 429 with Retry-After at
once, its body unread. A body alone is always let in, whatever its size under
max_body_bytes, so a budget smaller than one body cannot lock every upload out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from server.errors import UploadsBusy

log = logging.getLogger(__name__)

#: Seconds to suggest before retrying: uploads in progress take about that long on a LAN.
RETRY_AFTER = 1


class UploadBudget:
    """Bytes of request bodies being read, at most `limit` (one body may exceed it alone)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.peak = 0

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        """Count `size` bytes while the block reads a body; UploadsBusy (429) if no room."""
        if self.in_flight and self.in_flight + size > self.limit:
            log.info("upload refused: %d bytes of bodies are being read already "
                     "(max_body_bytes_in_flight %d)", self.in_flight, self.limit)
            raise UploadsBusy(
                f"the server is reading {self.in_flight} bytes of other uploads; this "
                f"{size}-byte body would pass max_body_bytes_in_flight ({self.limit}); retry "
                "shortly", retry_after=RETRY_AFTER)
        self.in_flight += size
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= size
