"""What `kontext weights check` found, and its rendering ending in an OK / NOT LOADABLE verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def _human_bytes(n: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as Hugging Face shows sizes)."""
    exp = min(int(math.log10(n)) // 3, 3) if n >= 1000 else 0
    return f"{n} bytes" if exp == 0 else f"{n / 1000**exp:.1f} {('kB', 'MB', 'GB')[exp - 1]}"


@dataclass
class ComponentReport:
    """One pipeline component (or a single file): what it is and what its files hold."""

    name: str
    class_name: str
    files: list[str] = field(default_factory=list)
    total_bytes: int = 0
    dtypes: set[str] = field(default_factory=set)
    parameters: int = 0

    def line(self) -> str:
        """One summary line for render()."""
        parts = [f"{self.name}: {self.class_name}", f"{len(self.files)} file(s)"]
        parts.append(_human_bytes(self.total_bytes))
        if self.parameters:
            parts.append(f"{self.parameters:,} parameters")
        if self.dtypes:
            parts.append("dtypes " + ", ".join(sorted(self.dtypes)))
        return "  " + ", ".join(parts)


@dataclass
class WeightsReport:
    """What `check_weights` found. `loadable` is whether `kontext serve` could load it."""

    location: str
    kind: str = "unknown"  # "folder", "repo", "single_file" or "unknown"
    path: str | None = None
    components: list[ComponentReport] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    is_tiny: bool = False
    matches_kontext_dev: bool | None = None
    base: WeightsReport | None = None
    #: The model family checked for (kontext-dev, klein-4b, klein-9b).
    model: str = "kontext-dev"

    @property
    def reasons(self) -> list[str]:
        """Every reason this cannot be loaded, the base's included; empty when loadable."""
        own = [f"missing {m}" for m in self.missing] + [f"corrupt {c}" for c in self.corrupt]
        base = [f"base {r}" for r in self.base.reasons] if self.base else []
        return own + self.problems + base

    @property
    def loadable(self) -> bool:
        """Whether `kontext serve --weights` could load this."""
        return not self.reasons

    def render(self) -> str:
        """A readable multi-line report ending in an OK / NOT LOADABLE verdict."""
        lines = [f"{self.location} ({self.kind}, as {self.model})"
                 + (f" -> {self.path}" if self.path else "")]
        if self.is_tiny:
            lines.append("!! TINY RANDOM CHECKPOINT: every image it makes is NOISE (demo only)")
        lines += [c.line() for c in self.components]
        lines += [f"  missing: {m}" for m in self.missing]
        lines += [f"  CORRUPT: {c}" for c in self.corrupt]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        if self.base is not None:
            lines.append("base components:")
            lines += ["  " + line for line in self.base.render().splitlines()[:-1]]
        if self.loadable:
            lines.append("OK: kontext serve can load this")
        else:
            lines.append("NOT LOADABLE: " + "; ".join(self.reasons))
        return "\n".join(lines)
