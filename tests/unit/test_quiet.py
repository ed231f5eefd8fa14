"""Third-party warnings that mean nothing to a user are dropped where they are emitted, and
only those: the same logger's other messages, and the same words from elsewhere, still show.
(The start of a real `kontext edit --local --demo` is checked quiet in
tests/e2e/test_edit_cli.py.)"""

from __future__ import annotations

import logging
import warnings

from pipelines.engine.quiet import (
    INAPPLICABLE,
    INAPPLICABLE_WARNINGS,
    silence_inapplicable_warnings,
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_each_listed_log_message_is_dropped_at_its_logger_and_nothing_else() -> None:
    silence_inapplicable_warnings()
    for name, words in INAPPLICABLE:
        logger, collect = logging.getLogger(name), _Collect()
        logger.addHandler(collect)
        try:
            logger.warning("x %s y", words)
            logger.warning("another warning of the same library")
            logging.getLogger(f"{name}.elsewhere").warning(words)
        finally:
            logger.removeHandler(collect)
        # The child logger's record passes its own (absent) filter and reaches the handler.
        assert collect.messages == ["another warning of the same library", words], name


def test_each_listed_python_warning_is_dropped_from_its_module_only() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_inapplicable_warnings()
        for message, module in INAPPLICABLE_WARNINGS:
            words = message.replace("\\", "")
            for name in (module.replace("\\", ""), "some.other.module"):
                code = compile(f"import warnings\nwarnings.warn({words + ' ...'!r})", name, "exec")
                exec(code, {"__name__": name})
    assert [str(w.message) for w in caught] == [
        message.replace("\\", "") + " ..." for message, _ in INAPPLICABLE_WARNINGS]
