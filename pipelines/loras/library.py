"""The LoRA folder: every `*.safetensors` under it (subfolders too) is a LoRA named by its
relative path without the extension, e.g. `styles/ghibli`.

Each listing walks the folder and stats every file; a file's header is read again only when
its size or modification time changed, so a newly dropped file shows up on the next listing
(and is usable by the next job) without a restart, and an unchanged folder costs one stat
per file. Torch-free: safe to call from the server's HTTP thread.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from pipelines.contract import LoraEntry
from pipelines.errors import InvalidInput
from pipelines.loras.formats import HeaderVerdict, judge_header, read_header

__all__ = ["SUFFIX", "LoraEntry", "LoraLibrary"]

SUFFIX = ".safetensors"


class LoraLibrary:
    """The entries of one folder, rescanned on every call. Thread-safe."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self._lock = threading.Lock()
        self._entries: dict[str, LoraEntry] = {}

    def entries(self) -> list[LoraEntry]:
        """Every LoRA in the folder, sorted by name (rescans; reads only changed headers)."""
        with self._lock:
            self._rescan()
            return sorted(self._entries.values(), key=lambda entry: entry.name)

    def get(self, name: str) -> LoraEntry:
        """The entry called `name`, or InvalidInput saying it is not in the folder.

        A known name costs one stat (its file is re-read if it changed); only an unknown
        or vanished one rescans the folder.
        """
        with self._lock:
            entry = self._refreshed(name)
            if entry is None:
                self._rescan()
                entry = self._entries.get(name)
        if entry is None:
            raise InvalidInput(f"unknown LoRA {name!r}: there is no {name}{SUFFIX} in the "
                               f"LoRA folder {self.folder}")
        return entry

    def record_load(self, entry: LoraEntry, problem: str | None) -> None:
        """Remember a full load's verdict for this version of the file."""
        with self._lock:
            current = self._entries.get(entry.name)
            if current is not None and current.version == entry.version:
                self._entries[entry.name] = replace(current, loads=problem is None,
                                                    problem=problem, verified=True)

    def _refreshed(self, name: str) -> LoraEntry | None:
        known = self._entries.get(name)
        if known is None:
            return None
        try:
            stat = known.path.stat()
        except OSError:
            return None
        if (known.size_bytes, known.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            known = _new_entry(name, known.path, stat.st_size, stat.st_mtime_ns)
            self._entries[name] = known
        return known

    def _rescan(self) -> None:
        if not self.folder.is_dir():
            self._entries = {}
            return
        fresh: dict[str, LoraEntry] = {}
        for path in self.folder.rglob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:  # vanished between the walk and the stat
                continue
            if not path.is_file():
                continue
            name = path.relative_to(self.folder).with_suffix("").as_posix()
            known = self._entries.get(name)
            if known and (known.size_bytes, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                fresh[name] = known
            else:
                fresh[name] = _new_entry(name, path, stat.st_size, stat.st_mtime_ns)
        self._entries = fresh


def _new_entry(name: str, path: Path, size: int, mtime_ns: int) -> LoraEntry:
    try:
        verdict = judge_header(read_header(path))
    except Exception as exc:  # any unreadable file is listed, never raised
        verdict = HeaderVerdict(layout="unreadable", rank=None, base_model=None,
                                problem=f"not a readable .safetensors file ({exc})")
    return LoraEntry(name=name, path=path, size_bytes=size, mtime_ns=mtime_ns,
                     layout=verdict.layout, rank=verdict.rank, base_model=verdict.base_model,
                     loads=verdict.problem is None, problem=verdict.problem,
                     warnings=verdict.warnings, family=verdict.family)
