"""The prompt term list: built-in patterns for the outright-forbidden categories, plus
regular expressions from an operator's file, matched against normalised text."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipelines.safety.normalize import normalize_text
from pipelines.safety.verdict import CLEAN, Verdict

_MINOR = (r"(?:child|children|kid|kids|minor|minors|underage|under-age|preteen|pre-teen|"
          r"toddler|infant|schoolgirl|schoolboy|(?:[1-9]|1[0-7])\s*(?:yo|y/o|years?[\s-]*old))")
_SEXUAL = r"(?:nude|naked|nsfw|sexual|sexy|porn\w*|explicit|erotic\w*|topless|lingerie)"
_PERSON = r"(?:her|his|their|him|them)"

#: Minimal, factual and non-graphic on purpose: the categories that the FLUX.1 [dev]
#: licence's usage restrictions forbid outright and that a prompt names in plain words.
#: The image classifier, the operator's own list and the operator's review do the rest.
BUILTIN_TERMS: Mapping[str, Sequence[str]] = {
    # child sexual abuse material
    "csam": (
        r"\bchild\s*(?:porn\w*|sexual\s+abuse\s+material)",
        r"\bcsam\b",
        r"\b(?:loli|shota)(?:con)?\b",
        r"\bjail\s*bait\b",
        r"\bp(?:a)?edo(?:phil\w*)?\b",
        rf"^(?=.*\b{_MINOR}\b)(?=.*\b{_SEXUAL}\b)",
    ),
    # non-consensual intimate imagery: undressing a person in an edited photo
    "ncii": (
        r"\b(?:nudify\w*|deep\s*nudes?)\b",
        rf"\b(?:remove|take\s+off|strip(?:\s+off)?)\s+(?:all\s+(?:of\s+)?)?{_PERSON}\s+"
        r"(?:clothes|clothing|underwear|bra|bikini)\b",
        rf"\bmake\s+{_PERSON}\s+(?:naked|nude|topless)\b",
        rf"\bundress\s+{_PERSON}\b",
    ),
}

#: Category of operator patterns written before any `[category]` line.
DEFAULT_CATEGORY = "operator-list"
_SECTION = re.compile(r"^\[([a-z0-9][a-z0-9_-]*)\]$")


@dataclass(frozen=True)
class TermList:
    """Compiled patterns by category."""

    patterns: Mapping[str, tuple[re.Pattern[str], ...]]

    @classmethod
    def compile(cls, terms: Mapping[str, Sequence[str]]) -> TermList:
        """Compile {category: [regex, ...]} (case-insensitive)."""
        return cls({category: tuple(re.compile(p, re.IGNORECASE) for p in patterns)
                    for category, patterns in terms.items()})

    def matches(self, text: str) -> tuple[str, ...]:
        """The categories whose patterns match the normalised `text`."""
        normalised = normalize_text(text)
        return tuple(category for category, patterns in self.patterns.items()
                     if any(p.search(normalised) for p in patterns))

    def count(self) -> int:
        """How many patterns the list holds."""
        return sum(len(p) for p in self.patterns.values())


def read_terms_file(path: Path) -> dict[str, list[str]]:
    """Read an operator's term file: one regular expression per line, matched against the
    normalised prompt (lower-case, look-alikes mapped to Latin, one space between words).
    Blank lines and lines starting with `#` are ignored; a line `[category]` names the
    category of the patterns after it (default "operator-list").

    Raises ValueError naming the file and line of an invalid pattern.
    """
    terms: dict[str, list[str]] = {}
    category = DEFAULT_CATEGORY
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if section := _SECTION.match(line):
            category = section.group(1)
            continue
        try:
            re.compile(line)
        except re.error as exc:
            raise ValueError(f"{path}:{number}: not a valid regular expression ({exc})") from exc
        terms.setdefault(category, []).append(line)
    return terms


def merge_terms(*sources: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Patterns of several lists, by category."""
    merged: dict[str, list[str]] = {}
    for source in sources:
        for category, patterns in source.items():
            merged.setdefault(category, []).extend(patterns)
    return merged


class TermCheck:
    """Flags prompts that match the term list; images are not its business."""

    name = "terms"

    def __init__(self, terms_file: Path | None = None, include_builtin: bool = True) -> None:
        operator = read_terms_file(terms_file) if terms_file else {}
        self._terms_file = terms_file
        self._operator_count = sum(len(p) for p in operator.values())
        self.terms = TermList.compile(
            merge_terms(BUILTIN_TERMS if include_builtin else {}, operator))

    def check_text(self, text: str) -> Verdict:
        """Flag the categories whose patterns match `text`."""
        start = time.perf_counter()
        categories = self.terms.matches(text)
        return Verdict(bool(categories), categories, dict.fromkeys(categories, 1.0),
                       time.perf_counter() - start)

    def check_image(self, image: Image.Image) -> Verdict:
        """Images are the classifier's business."""
        return CLEAN

    def describe(self) -> str:
        """E.g. `terms: 11 patterns (built-in csam, ncii; 3 from /etc/kontext/terms.txt)`."""
        source = f"{self._operator_count} from {self._terms_file}" if self._terms_file \
            else "no operator file"
        return (f"terms: {self.terms.count()} patterns "
                f"(categories {', '.join(self.terms.patterns) or 'none'}; {source})")
