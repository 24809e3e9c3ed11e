"""The newest run records of a runs folder, read cheaply: run ids begin with their UTC start time,
so the file names sort by time and only the newest are parsed; a parsed file is kept until its
modification time or size changes (a running job rewrites its record when it finishes)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

RECENT = 50


class RecentRuns:
    def __init__(self, folder: Path | str, limit: int = RECENT):
        self.folder, self.limit = Path(folder), limit
        self._parsed: dict[str, tuple[int, int, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def available(self) -> bool:
        return self.folder.is_dir()

    def records(self) -> list[dict[str, Any]]:
        """The newest `limit` records, newest first."""
        try:
            names = sorted((e.name for e in os.scandir(self.folder) if e.name.endswith(".json")), reverse=True)
        except OSError:
            return []
        found: list[tuple[str, int, dict[str, Any]]] = []
        with self._lock:
            for name in names[: self.limit]:
                read = self._read(name)
                if read is not None:
                    found.append((name.split("-", 1)[0], *read))
            keep = set(names[: self.limit])
            for name in [n for n in self._parsed if n not in keep]:
                del self._parsed[name]
        # Run ids name their start to the second: within one, the record written last goes first.
        found.sort(key=lambda item: item[:2], reverse=True)
        return [record for _, _, record in found]

    def _read(self, name: str) -> tuple[int, dict[str, Any]] | None:
        """The record and when it was last written (ns), or None if it cannot be read."""
        path = self.folder / name
        try:
            stat = path.stat()
            cached = self._parsed.get(name)
            if cached and cached[:2] == (stat.st_mtime_ns, stat.st_size):
                return stat.st_mtime_ns, cached[2]
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        self._parsed[name] = (stat.st_mtime_ns, stat.st_size, record)
        return stat.st_mtime_ns, record
