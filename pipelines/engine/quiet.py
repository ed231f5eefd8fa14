"""Third-party warnings that do not apply to this engine, silenced where they are emitted.

Each is dropped by a filter on the one logger that emits it, matching its own words, so any
other message of that logger (and the same warning in another library) still shows.
"""

from __future__ import annotations

import logging

#: (logger, words of the message) for each warning that does not apply here.
INAPPLICABLE = (
    # diffusers' Flux modules import CLIPImageProcessor for the optional IP-adapter image
    # encoder. Without torchvision, transformers 5 substitutes the PIL processor and says
    # so, once per class. The Kontext pipeline never uses an image processor (references go
    # through the VAE), so which backend it would have is moot; torchvision's PyPI build is
    # tied to CUDA torch, so installing it is not a cheap fix.
    ("transformers.utils.import_utils", "requires torchvision (not installed); falling back"),
)


class _DropMessage(logging.Filter):
    """Drops the records whose message contains `words`."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        return self.words not in record.getMessage()


def silence_inapplicable_warnings() -> None:
    """Install the filters of INAPPLICABLE (idempotent); before diffusers is imported."""
    for name, words in INAPPLICABLE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.words == words for f in logger.filters):
            logger.addFilter(_DropMessage(words))
