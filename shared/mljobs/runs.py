"""Run records: one JSON file per job run in <models>/_runs/, whoever started the job."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .fsutil import atomic_write_text


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    job: str
    run_id: str = field(default_factory=new_run_id)
    status: str = "running"
    started: str = field(default_factory=utc_now)
    finished: str | None = None
    duration_s: float | None = None
    model: dict[str, Any] = field(default_factory=dict)
    input: str | None = None
    output: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    exit_code: int | None = None
    reason: str | None = None
    status_detail: str | None = None  # e.g. "already scored": succeeded without new output
    host: str = field(default_factory=socket.gethostname)
    # Who asked for the run (a scheduler's run id, the launcher, compose); free text.
    started_by: str = field(default_factory=lambda: os.environ.get("MLJOBS_STARTED_BY", "direct"))
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def finish(self, exit_code: int, reason: str | None = None) -> None:
        self.exit_code = exit_code
        self.status = "succeeded" if exit_code == 0 else "failed"
        self.reason = reason
        self.finished = utc_now()
        self.duration_s = round(time.monotonic() - self._t0, 3)


class RunLog:
    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    def write(self, record: RunRecord) -> None:
        atomic_write_text(self.folder / f"{record.run_id}.json", json.dumps(record.as_dict(), indent=2))

    def records(self) -> list[dict[str, Any]]:
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out
