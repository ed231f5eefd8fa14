"""Progress: a tqdm bar on a terminal, plain log lines (with the same rate and ETA) otherwise."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

_METER = "{n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"


class Progress:
    """Counts finished rows; rows done before the run started (skipped) do not count in
    the rate, so the ETA reflects the rows that really run."""

    def __init__(self, total: int, initial: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.initial, self.done = total, initial, initial
        self.started = time.monotonic()
        self.bar: tqdm | None = None
        if is_terminal(self.stream):
            self.bar = tqdm(total=total, initial=initial, unit="img", file=self.stream,
                            dynamic_ncols=True, smoothing=0.1)

    def advance(self, status: str, label: str, detail: str = "") -> None:
        """One row finished with `status`; failures are always shown with their error."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if status == "failed":
                self.bar.write(f"failed: {label}: {detail}", file=self.stream)
            return
        meter = tqdm.format_meter(self.done, self.total, time.monotonic() - self.started,
                                  initial=self.initial, unit="img", bar_format=_METER)
        text = f"{meter} {status} {label}" + (f": {detail}" if detail else "")
        print(text, file=self.stream, flush=True)

    def logging(self) -> contextlib.AbstractContextManager:
        """While the bar shows, log records go through tqdm so they do not break it."""
        return logging_redirect_tqdm() if self.bar is not None else contextlib.nullcontext()

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a terminal (a progress bar), not a pipe or file (plain lines)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
