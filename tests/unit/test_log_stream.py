"""The log follows sys.stderr: a host that swaps it after logging is set up (pytest's
capture does, once per test, closing the old one) gets every line, and no line goes to a
closed stream ("--- Logging error --- I/O operation on closed file")."""

from __future__ import annotations

import io
import logging
import sys

from server.logs import configure_logging


def test_lines_go_to_the_current_stderr_after_the_old_one_closed(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("info")
    logging.getLogger("kontext.test").info("while the first stream is open")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("kontext.test").info("after it closed")
    assert "after it closed" in second.getvalue()
    assert "Logging error" not in second.getvalue()
