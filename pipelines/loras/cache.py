"""Loaded adapters kept in host memory, least recently used evicted first, bounded by bytes.

A cached LoRA costs no disk read and no conversion on its next use: only the copy into the
slots. Keys identify a file's contents (path, size, mtime), so an edited file is read again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol

from pipelines.contract import CacheStats

__all__ = ["AdapterCache", "CacheStats", "Sized"]


class Sized(Protocol):
    """Anything the cache holds: it must say how many bytes it keeps alive."""

    nbytes: int


class AdapterCache:
    """An LRU map bounded by the sum of its values' `nbytes`. Thread-safe."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._items: OrderedDict[Hashable, Sized] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Sized | None:
        """The value for `key` (now the most recently used), counting a hit or a miss."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: Sized) -> None:
        """Keep `value`, evicting the least recently used until it fits.

        A value larger than the whole capacity is not kept (the job still uses it).
        """
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key).nbytes
            if value.nbytes > self.capacity_bytes:
                return
            while self._items and self._bytes + value.nbytes > self.capacity_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes
                self._evictions += 1
            self._items[key] = value
            self._bytes += value.nbytes

    def clear(self) -> None:
        """Drop every value (the counters stay)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return CacheStats(hits=self._hits, misses=self._misses, evictions=self._evictions,
                              bytes=self._bytes, capacity_bytes=self.capacity_bytes,
                              entries=len(self._items))
