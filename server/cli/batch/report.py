"""The JSONL report: one line per row, written as rows finish and moved into place at the end."""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.atomic_files import TEMP_SUFFIX
from server.cli.batch.manifest import BadRow, Row
from server.cli.photos import Photo

#: The runners' callback for a finished row: finish(row, status, **report fields).
Finish = Callable[..., None]


def previous_configs(path: Path) -> dict[str, dict[str, Any]]:
    """Output path → config (with the seed used) of each row a previous report marks done.

    Lets a resumed run report the seed an output was really made with.
    """
    configs: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError, AttributeError, TypeError):
                entry = json.loads(line)
                if entry.get("status") in ("ok", "skipped") and entry.get("config"):
                    configs[entry["output"]] = entry["config"]
    return configs


def image_field(images: tuple[Path, ...]) -> str | list[str] | None:
    """A row's images as its manifest gives them: one path, or a list for several."""
    if len(images) == 1:
        return str(images[0])
    return [str(image) for image in images] or None


def job_notes(notice: str | None, photos: list[Photo]) -> dict[str, Any]:
    """A done row's report fields beyond its result: the server's `notice` (a demo server's
    images are noise) and the inputs shrunk before sending."""
    notes: dict[str, Any] = {"notice": notice} if notice else {}
    shrunk = [entry for photo in photos if (entry := photo.shrunk()) is not None]
    if shrunk:
        notes["shrunk"] = shrunk
    return notes


def row_line(row: Row | BadRow, status: str, **extra: Any) -> dict[str, Any]:
    """The report line of one row; `extra` adds config, seconds, error, reason, …"""
    line: dict[str, Any] = {
        "row": row.number, "source": row.source, "status": status,
        "image": image_field(row.images),
        "output": str(row.output) if row.output else None,
    }
    if isinstance(row, BadRow):
        line["config"] = row.fields
    line.update(extra)
    return line


class Report:
    """Appends lines to a temp file (flushed per line), replaced into `path` on close()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous = previous_configs(path)
        self.counts: Counter[str] = Counter()
        #: Inputs shrunk before sending, and the server's notice, for the closing lines.
        self.shrunk = 0
        self.notice: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the old report so a killed run leaves the old one intact.
        self._temp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
        self._file = self._temp.open("w", encoding="utf-8")

    def write(self, line: dict[str, Any]) -> None:
        """Record one row."""
        self.counts[line["status"]] += 1
        self.shrunk += len(line.get("shrunk", ()))
        self.notice = self.notice or line.get("notice")
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Move the report into place."""
        self._file.close()
        os.replace(self._temp, self.path)


def summary(counts: Counter[str], total: int, seconds: float, report: Path,
            interrupted: bool) -> str:
    """The one-line summary printed at the end."""
    done = sum(counts.values())
    text = (f"kontext batch: {total} rows: {counts['ok']} ok, {counts['skipped']} skipped, "
            f"{counts['failed']} failed in {seconds:.1f}s; report: {report}")
    if interrupted:
        text += (f"; interrupted with {total - done} rows not run "
                 "(re-run the same command to finish them)")
    return text
