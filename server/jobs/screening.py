"""The content filter on the job path (docs/safety.md): three checkpoints per job, the
policy that decides what a finding does, and what the checks cost.

  prompt  the prompt the model gets (style preset applied), before the job is admitted;
  input   every input image once decoded: while the job waits and runs on the local engine
          (a refusal stops it at its next step), before anything is sent upstream for a
          forwarded job;
  output  the generated image, before it is encoded (local) or returned (forwarded).

Image checks run on one dedicated thread: the classifier uses torch's process-wide intra-op
threads, so checks in parallel would only oversubscribe the cores. Prompt checks run on the
default executor (microseconds, but an operator's pattern may backtrack: not on the loop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from PIL import Image

from server.errors import ContentRefused, OutputRefused

if TYPE_CHECKING:
    from server.metrics import Metrics
    from server.wire.base import WireModel

log = logging.getLogger(__name__)

Policy = Literal["block", "flag", "off"]
Checkpoint = Literal["prompt", "input", "output"]
T = TypeVar("T")

#: Response header of a served job the filter flagged (policy `flag`): `input=nsfw; ...`.
MODERATION_HEADER = "X-Kontext-Moderation"
#: [pro]/[max] `safety_tolerance` (0 strictest … 6 most permissive) → the classifier
#: threshold of that job, never looser than the operator's `safety_threshold`.
TOLERANCE_THRESHOLDS = (0.30, 0.50, 0.70, 0.85, 0.90, 0.95, 0.99)


class Verdict(Protocol):
    """What the content filter answers about one prompt or image (pipelines/safety)."""

    flagged: bool
    #: What was found ("nsfw", ...): safe to log and to show to clients.
    categories: tuple[str, ...]
    #: A score in [0, 1] per category the checks measured.
    scores: dict[str, float]
    seconds: float


class ContentFilter(Protocol):
    """What the job path needs of the content filter (pipelines/safety: ContentFilter,
    built by the composition root)."""

    def check_text(self, text: str) -> Verdict:
        """The prompt checkpoint."""

    def check_image(self, image: Image.Image) -> Verdict:
        """The input and output checkpoints."""

    def describe(self) -> list[str]:
        """One line per check, for the startup log and /readyz."""


def job_threshold(config: WireModel, operator: float) -> float | None:
    """The classifier threshold a job's own `safety_tolerance` asks for, capped by the
    operator's; None for job types without one (the filter's own threshold applies)."""
    tolerance = getattr(config, "safety_tolerance", None)
    return None if tolerance is None else min(operator, TOLERANCE_THRESHOLDS[tolerance])


class ContentScreen:
    """The content filter, its policy and its thread, shared by every job."""

    def __init__(self, content_filter: ContentFilter, policy: Policy, threshold: float,
                 metrics: Metrics) -> None:
        self.filter = content_filter
        self.policy = policy
        self.threshold = threshold
        self.metrics = metrics
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="safety")

    def describe(self) -> list[str]:
        """One line per check, for the startup log and /readyz."""
        return self.filter.describe()

    def screening(self, job_id: str, config: WireModel) -> Screening:
        """A job's screening, at the threshold its config asks for."""
        return Screening(self, job_id, job_threshold(config, self.threshold))

    async def check_text(self, text: str) -> Verdict:
        """The filter's verdict on a prompt, off the loop."""
        return await asyncio.to_thread(self.filter.check_text, text)

    async def check_image(self, image: Image.Image) -> Verdict:
        """The filter's verdict on an image, on the filter's own thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.filter.check_image, image)

    def close(self) -> None:
        """Stop the thread (checks not started are dropped)."""
        self._thread.shutdown(wait=False, cancel_futures=True)


@dataclass
class Screening:
    """One job's passage through the filter: what each checkpoint cost and flagged.

    With no screen (safety off) every check is a no-op and nothing is reported.
    """

    screen: ContentScreen | None
    job_id: str
    #: The job's own classifier threshold (from safety_tolerance), or None.
    threshold: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    flagged: dict[str, list[str]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether the filter checks this job."""
        return self.screen is not None

    async def prompt(self, text: str) -> None:
        """The prompt checkpoint; ContentRefused (400) under `block`."""
        if self.screen is not None:
            self._judge("prompt", await self.screen.check_text(text), "prompt")

    async def inputs(self, images: Sequence[Image.Image]) -> None:
        """The input checkpoint, image by image; ContentRefused (400) under `block`."""
        if self.screen is None:
            return
        for index, image in enumerate(images):
            verdict = await self.screen.check_image(image)
            self._judge("input", verdict, "input" if len(images) == 1 else f"input[{index}]")

    async def output(self, image: Image.Image) -> None:
        """The output checkpoint; OutputRefused (403) under `block`."""
        if self.screen is not None:
            self._judge("output", await self.screen.check_image(image), "output")

    def _categories(self, verdict: Verdict) -> tuple[str, ...]:
        if self.threshold is None:
            return verdict.categories
        # Term-list categories score 1.0: a tolerance never lets a listed prompt through.
        return tuple(name for name, score in verdict.scores.items() if score >= self.threshold)

    def _judge(self, checkpoint: Checkpoint, verdict: Verdict, where: str) -> None:
        screen = self.screen
        assert screen is not None
        categories = self._categories(verdict)
        self.seconds[checkpoint] = self.seconds.get(checkpoint, 0.0) + verdict.seconds
        screen.metrics.count_content_check(checkpoint, verdict.seconds, categories,
                                           screen.policy)
        if not categories:
            return
        found = self.flagged.setdefault(checkpoint, [])
        found += [name for name in categories if name not in found]
        action = "refused" if screen.policy == "block" else "flagged"
        # The job id and the category only: never the prompt, pattern or scores.
        log.warning("content filter %s job %s at %s: category %s", action, self.job_id,
                    where, ", ".join(categories))
        if screen.policy == "block":
            raise OutputRefused(categories) if checkpoint == "output" \
                else ContentRefused(where, categories)

    def metrics(self) -> dict[str, float] | None:
        """`metrics.safety_seconds` of the job JSON: the filter's time per checkpoint."""
        if self.screen is None:
            return None
        return {name: round(seconds, 4) for name, seconds in self.seconds.items()}

    def to_json(self) -> dict[str, Any] | None:
        """`moderation` of the job JSON: the policy and what it flagged, by checkpoint."""
        if self.screen is None:
            return None
        return {"policy": self.screen.policy, "flagged": dict(self.flagged)}

    def header(self) -> str | None:
        """The X-Kontext-Moderation value of a served job the filter flagged, else None."""
        return "; ".join(f"{checkpoint}={'+'.join(names)}"
                         for checkpoint, names in self.flagged.items()) or None


async def run_screened(run: Callable[[], Awaitable[T]], check: asyncio.Future[None] | None,
                       overlap: bool) -> T:
    """`run()` once the input `check` allows it: with `overlap`, while the check runs (a
    refusal cancels the run and is raised once the backend has let go); without, after
    it has passed. No result of a run whose input was refused is ever returned."""
    if check is None:
        return await run()
    if not overlap:
        await check
        return await run()
    running = asyncio.ensure_future(run())
    try:
        await asyncio.wait({running, check}, return_when=asyncio.FIRST_COMPLETED)
        if check.done():
            check.result()  # raises the refusal
        result = await running
        await check
        return result
    finally:
        await _stop(running)


async def _stop(task: asyncio.Future[Any]) -> None:
    """Cancel `task` if it still runs and wait until it has let go (the engine is free)."""
    if task.done():
        return
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: the refusal is what the job answers


def drop(check: asyncio.Future[None] | None) -> None:
    """Cancel an input check nobody waits for any more (its outcome no longer matters)."""
    if check is None:
        return
    check.cancel()
    if check.done() and not check.cancelled():
        check.exception()  # retrieved, so asyncio does not report it as lost
