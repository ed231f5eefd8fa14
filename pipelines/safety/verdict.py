"""What a content check answers, and the interface every check implements."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image


@dataclass(frozen=True)
class Verdict:
    """One check's (or a whole filter's) answer about one prompt or image.

    `categories` names what was found ("nsfw", "csam", ...), never the matched text or the
    classifier's internals, so it is safe to log and to show to clients. `scores` holds a
    score in [0, 1] per category the check measured (a classifier reports its unsafe labels
    even when under the threshold; a term list reports 1.0 per category it matched).
    `seconds` is the wall time the check took.
    """

    flagged: bool = False
    categories: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @staticmethod
    def merge(verdicts: Iterable[Verdict], seconds: float) -> Verdict:
        """One verdict from several: flagged if any is, categories in first-seen order,
        the highest score per category."""
        categories: list[str] = []
        scores: dict[str, float] = {}
        flagged = False
        for verdict in verdicts:
            flagged = flagged or verdict.flagged
            categories += [c for c in verdict.categories if c not in categories]
            for name, score in verdict.scores.items():
                scores[name] = max(score, scores.get(name, 0.0))
        return Verdict(flagged, tuple(categories), scores, seconds)


#: The answer of a check that has nothing to say about this kind of content.
CLEAN = Verdict()


class SafetyCheck(Protocol):
    """A content check. Each kind answers CLEAN for content it does not inspect."""

    name: str

    def check_text(self, text: str) -> Verdict:
        """Check a prompt (after style-preset expansion)."""
        ...

    def check_image(self, image: Image.Image) -> Verdict:
        """Check an input image or an output image before it is encoded."""
        ...

    def describe(self) -> str:
        """One line for logs and /readyz: what this check is and how it is configured."""
        ...
