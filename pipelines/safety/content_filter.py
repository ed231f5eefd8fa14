"""The content filter: the configured checks, run together, one verdict per checkpoint."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image

from pipelines.safety.classifier import (
    DEFAULT_MODEL,
    DEFAULT_THRESHOLD,
    DEFAULT_UNSAFE_LABELS,
    ImageClassifierCheck,
)
from pipelines.safety.terms import TermCheck
from pipelines.safety.verdict import SafetyCheck, Verdict


class ContentFilter:
    """Runs every check on a prompt or an image and merges their verdicts.

    Thread-safe for concurrent calls: checks hold no per-call state.
    """

    def __init__(self, checks: Sequence[SafetyCheck]) -> None:
        self.checks = tuple(checks)

    def check_text(self, text: str) -> Verdict:
        """The prompt checkpoint (call it with the prompt after style-preset expansion)."""
        start = time.perf_counter()
        verdicts = [check.check_text(text) for check in self.checks]
        return Verdict.merge(verdicts, time.perf_counter() - start)

    def check_image(self, image: Image.Image) -> Verdict:
        """The input-image and output-image checkpoints."""
        start = time.perf_counter()
        verdicts = [check.check_image(image) for check in self.checks]
        return Verdict.merge(verdicts, time.perf_counter() - start)

    def describe(self) -> list[str]:
        """One line per check, for the startup log and /readyz."""
        return [check.describe() for check in self.checks]


def build_content_filter(*, model: str | None = DEFAULT_MODEL,
                         threshold: float = DEFAULT_THRESHOLD, device: str = "cpu",
                         unsafe_labels: Iterable[str] = DEFAULT_UNSAFE_LABELS,
                         terms_file: Path | None = None, cache_dir: Path | None = None
                         ) -> ContentFilter:
    """The standard filter: the term list (built-in + `terms_file`) and, unless `model` is
    None, the image classifier. Raises WeightsError when the classifier is not on local disk
    and ValueError for a bad threshold or terms file."""
    checks: list[SafetyCheck] = [TermCheck(terms_file)]
    if model is not None:
        checks.append(ImageClassifierCheck(model, threshold=threshold, device=device,
                                           unsafe_labels=unsafe_labels, cache_dir=cache_dir))
    return ContentFilter(checks)
