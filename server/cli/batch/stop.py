"""Ctrl-C for a batch: the first SIGINT asks the batch to stop, the second stops it now."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType


class StopRequest:
    """Context manager installing a SIGINT handler (main thread only).

    First Ctrl-C: `event` is set; runners start no new row (and --local cancels its edit
    through the same event). Second Ctrl-C: KeyboardInterrupt, as Python would by default.
    """

    def __init__(self, message: str) -> None:
        self.event = threading.Event()
        self.message = message
        self._previous: object = None
        self._callbacks: list[Callable[[], None]] = []

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the signal handler) when the first Ctrl-C arrives."""
        self._callbacks.append(callback)

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self.event.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        for callback in self._callbacks:
            callback()
        print(f"\n{self.message} (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
