"""A LoRA folder for the fake engine: the LoraCatalog surface the server uses (listing,
lookup, cache counters) over made-up entries, and the engine's per-job rules, without torch."""

from __future__ import annotations

from pathlib import Path

from pipelines.contract import CacheStats, LoraChoice, LoraEntry, LoraSwitch
from pipelines.errors import InvalidInput
from pipelines.loras.choices import check_choices


def fake_entry(name: str, loads: bool = True, problem: str | None = None, rank: int | None = 4,
               layout: str = "diffusers", base_model: str | None = "FLUX.1 (from the key "
               "layout)", size_bytes: int = 1000, warnings: tuple[str, ...] = ()) -> LoraEntry:
    """A folder entry as the engine's library would list it."""
    return LoraEntry(name=name, path=Path("/fake-loras") / f"{name}.safetensors",
                     size_bytes=size_bytes, mtime_ns=0, layout=layout, rank=rank,
                     base_model=base_model, loads=loads, problem=problem, warnings=warnings)


class FakeLoras:
    """Entries in memory; `add` plays a file dropped into the folder."""

    def __init__(self, entries: list[LoraEntry], problem: str | None = None) -> None:
        self.problem = problem
        self._entries = {entry.name: entry for entry in entries}
        self._cached: set[str] = set()
        self._hits = self._misses = 0

    def add(self, entry: LoraEntry) -> None:
        self._entries[entry.name] = entry

    def entries(self) -> list[LoraEntry]:
        return sorted(self._entries.values(), key=lambda entry: entry.name)

    def entry(self, name: str) -> LoraEntry:
        if name not in self._entries:
            raise InvalidInput(f"unknown LoRA {name!r}: there is no {name}.safetensors in the "
                               "LoRA folder /fake-loras")
        return self._entries[name]

    def stats(self) -> CacheStats:
        size = 100 * len(self._cached)
        return CacheStats(hits=self._hits, misses=self._misses, evictions=0, bytes=size,
                          capacity_bytes=10_000, entries=len(self._cached))

    def switch(self, choices: tuple[LoraChoice, ...]) -> LoraSwitch:
        """What the engine's LoraManager.switch does, minus the tensors."""
        if choices and self.problem is not None:
            raise InvalidInput(f"loras: {self.problem}")
        hits = misses = 0
        for choice in check_choices(choices):
            entry = self.entry(choice.name)
            if not entry.loads:
                raise InvalidInput(f"LoRA {choice.name!r} cannot be used: {entry.problem}")
            hit = choice.name in self._cached
            self._cached.add(choice.name)
            hits, misses = hits + hit, misses + (not hit)
        self._hits, self._misses = self._hits + hits, self._misses + misses
        applied = tuple(choice for choice in check_choices(choices) if choice.scale != 0)
        return LoraSwitch(applied=applied, switch_seconds=0.001, cache_hits=hits,
                          cache_misses=misses)
