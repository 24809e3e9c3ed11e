"""What the overview shows, read from a model store and a runs folder. Versions are immutable, so
each is verified and summarised once and kept (VersionCache); aliases, their history and the
runs are read again for every page, which costs a few small reads. Verifying hashes every file
of a version, so a page spends at most a time budget on it: versions left over are shown as
not checked yet (from their own unchecked metadata) and are checked by the next renders."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from ..errors import MljobsError
from ..predictor import METADATA_FILE
from ..store import ModelStore
from ..metric_direction import main_metric
from .recent_runs import RecentRuns

REPORT_FILE, REPORT_DATA = "report.html", "report.json"


def is_report_file(file: str) -> bool:
    """The files of a version a reader may fetch: its report and its plots, never the model."""
    return file == REPORT_FILE or (file.startswith("plot-") and "/" not in file and file.endswith((".png", ".svg")))


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    metadata: Mapping[str, Any]
    report_data: Mapping[str, Any]  # report.json: the baseline and the importances ({} if none)
    report_files: tuple[str, ...]
    verified: bool  # its files match its MANIFEST (and signature, where a key is set)
    signed: bool  # the signature was checked with this deployment's key
    problem: str | None = None  # why it failed verification
    pending: bool = False  # not checked yet: the page's time budget ran out first

    @property
    def metrics(self) -> Mapping[str, float]:
        found = self.metadata.get("metrics")
        return found if isinstance(found, dict) else {}

    @property
    def task(self) -> str | None:
        return self.metadata.get("task")

    @property
    def estimator(self) -> str:
        estimator = self.metadata.get("estimator")
        return str(estimator.get("name", "")) if isinstance(estimator, dict) else ""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: list[VersionInfo]
    aliases: dict[str, str]
    events: list[dict[str, Any]]

    @property
    def metric(self) -> str | None:
        latest = next((v for v in reversed(self.versions) if v.metrics), None)
        return main_metric(latest.task, latest.metrics) if latest else None

    def version(self, version: str | None) -> VersionInfo | None:
        return next((v for v in self.versions if v.version == version), None)


@dataclass(frozen=True)
class Overview:
    location: str
    signing: bool
    models: list[ModelInfo]
    runs: list[dict[str, Any]]
    runs_available: bool
    generated: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class VersionCache:
    """Verified summaries of versions, and the report files of the most recently used ones."""

    def __init__(self, store: ModelStore, keep_reports: int = 16):
        self.store = store
        self._infos: dict[tuple[str, str], VersionInfo] = {}
        self._files: OrderedDict[tuple[str, str], dict[str, bytes]] = OrderedDict()
        self._keep = keep_reports
        self._lock = threading.Lock()

    def info(self, name: str, version: str, deadline: float | None = None) -> VersionInfo:
        """The version, verified; past `deadline` (time.monotonic()), unchecked and marked pending."""
        with self._lock:
            known = self._infos.get((name, version))
        if known is not None:
            return known
        if deadline is not None and time.monotonic() > deadline:
            return VersionInfo(name, version, self._unchecked_metadata(name, version), {}, (), False, False, pending=True)
        info, files = self._read(name, version)
        with self._lock:
            if info.verified:  # a refused version is checked again next time (it may be repaired)
                self._infos[(name, version)] = info
            self._remember(name, version, files)
        return info

    def report_file(self, name: str, version: str, file: str) -> bytes | None:
        """A report file of a verified version, or None."""
        with self._lock:
            files = self._files.get((name, version))
            if files is not None:
                self._files.move_to_end((name, version))
                return files.get(file)
        info, files = self._read(name, version)
        with self._lock:
            self._remember(name, version, files)
        return files.get(file) if info.verified else None

    def _remember(self, name: str, version: str, files: dict[str, bytes]) -> None:
        self._files[(name, version)] = files
        self._files.move_to_end((name, version))
        while len(self._files) > self._keep:
            self._files.popitem(last=False)

    def _read(self, name: str, version: str) -> tuple[VersionInfo, dict[str, bytes]]:
        try:
            verified = self.store.open_version(name, version)
        except MljobsError as exc:
            return VersionInfo(name, version, self._unchecked_metadata(name, version), {}, (), False, False, str(exc)), {}
        files = {f: data for f, data in verified.files.items() if is_report_file(f)}
        return VersionInfo(name, version, _json(verified.files.get(METADATA_FILE)), _json(verified.files.get(REPORT_DATA)),
                           tuple(sorted(files)), True, verified.signed), files

    def _unchecked_metadata(self, name: str, version: str) -> dict[str, Any]:
        """What a refused version says of itself, shown as such (never hidden, never trusted)."""
        try:
            return _json(self.store.storage.read_version_file(name, version, METADATA_FILE, None))
        except (OSError, MljobsError):
            return {}


def _json(data: bytes | None) -> dict[str, Any]:
    try:
        found = json.loads(data) if data else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def model_info(store: ModelStore, versions: VersionCache, name: str, deadline: float | None = None) -> ModelInfo:
    # Newest first: those are the versions people look at, so they are checked first.
    infos = {v: versions.info(name, v, deadline) for v in reversed(store.versions(name))}
    return ModelInfo(name, list(reversed(infos.values())), store.aliases(name), store.alias_events(name))


def collect(store: ModelStore, versions: VersionCache, runs: RecentRuns | None, budget_s: float | None = None) -> Overview:
    """Everything the overview shows; with `budget_s`, versions not verified by then are pending."""
    deadline = time.monotonic() + budget_s if budget_s is not None else None
    models = [model_info(store, versions, name, deadline) for name in store.names() if store.versions(name)]
    available = runs is not None and runs.available()
    return Overview(store.location, store.key is not None, models, runs.records() if runs is not None and available else [], available)
