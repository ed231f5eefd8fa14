"""The memory of request bodies being read at once, bounded (max_body_bytes_in_flight), and
each client's part of it (client_share).

A request takes its declared size from the budget before its body is read and gives it
back once the body is parsed; one that does not fit is answered 429 with Retry-After at
once, its body unread. A body alone is always let in, whatever its size under
max_body_bytes, so a budget smaller than one body cannot lock every upload out; and so is
a client's first body, so a client's share never refuses it its only upload.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Iterator

from server.errors import UploadsBusy

log = logging.getLogger(__name__)

#: Seconds to suggest before retrying: uploads in progress take about that long on a LAN.
RETRY_AFTER = 1


class UploadBudget:
    """Bytes of request bodies being read, at most `limit` (one body may exceed it alone),
    at most `share` of it from one client (a client's first body may exceed that alone)."""

    def __init__(self, limit: int, share: float = 1.0) -> None:
        self.limit = limit
        self.client_limit = math.ceil(limit * share)
        self.in_flight = 0
        self.peak = 0
        self._by_client: Counter[str | None] = Counter()

    def _check(self, size: int, client: str | None) -> None:
        """UploadsBusy when `client`'s body of `size` bytes does not fit (raised here, with
        no local holding it: a kept exception would hold the frames that hold it)."""
        mine = self._by_client[client]
        if mine and mine + size > self.client_limit:
            log.info("upload refused: this client has %d bytes of bodies being read already "
                     "(client_share of max_body_bytes_in_flight: %d)", mine, self.client_limit)
            raise UploadsBusy(
                f"this client is sending {mine} bytes of other uploads; this {size}-byte body "
                f"would pass its share of the upload memory ({self.client_limit} bytes: "
                "client_share of max_body_bytes_in_flight); retry when one is done",
                retry_after=RETRY_AFTER)
        if self.in_flight and self.in_flight + size > self.limit:
            log.info("upload refused: %d bytes of bodies are being read already "
                     "(max_body_bytes_in_flight %d)", self.in_flight, self.limit)
            raise UploadsBusy(
                f"the server is reading {self.in_flight} bytes of other uploads; this "
                f"{size}-byte body would pass max_body_bytes_in_flight ({self.limit}); retry "
                "shortly", retry_after=RETRY_AFTER)

    @contextlib.contextmanager
    def hold(self, size: int, client: str | None = None) -> Iterator[None]:
        """Count `size` bytes of `client` while the block reads a body; UploadsBusy (429)
        if there is no room for it."""
        self._check(size, client)
        self.in_flight += size
        self._by_client[client] += size
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= size
            self._by_client[client] -= size
            if self._by_client[client] <= 0:
                del self._by_client[client]
