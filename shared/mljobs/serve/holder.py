"""The model a server worker answers with, and how it follows its alias (hot swap).

A background thread re-resolves the alias every few seconds; a new version is loaded and verified
off the request path and swapped in with one reference assignment, so requests see either the
old model or the new one, never a mix. A version that fails to load is refused and the old one
keeps serving.
"""

from __future__ import annotations

import enum
import logging
import threading

from ..errors import MljobsError
from ..predictor import Predictor, load_predictor
from ..store import ModelRef, ModelStore
from .metrics import ServerMetrics

log = logging.getLogger("mljobs.serve")


class Health(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    NO_MODEL = "no_model"


class ModelHolder:
    def __init__(self, store: ModelStore, ref: ModelRef, metrics: ServerMetrics, poll_seconds: float = 2.0):
        self.store, self.ref, self.metrics, self.poll_seconds = store, ref, metrics, poll_seconds
        self.predictor: Predictor | None = None
        self.health = Health.STARTING
        self.last_error: str | None = None
        self.refused: set[str] = set()
        self._stop = threading.Event()

    def refresh(self) -> None:
        """Load the version the reference points to now, if it is not the one being served."""
        try:
            version = self.store.resolve(self.ref)
        except MljobsError as exc:
            self._note_failure(str(exc))
            return
        current = self.predictor
        if (current is not None and current.version == version) or version in self.refused:
            return
        try:
            predictor = load_predictor(self.store, ModelRef(self.ref.name, version=version))
        except MljobsError as exc:
            self.refused.add(version)
            self.metrics.load_failures.labels(version).inc()
            self._note_failure(f"version {version} refused: {exc}")
            return
        self.predictor, self.health, self.last_error = predictor, Health.READY, None
        self.metrics.serving(predictor.name, predictor.version, current.version if current else None)
        log.info("serving %s:%s", predictor.name, predictor.version)

    def _note_failure(self, reason: str) -> None:
        self.last_error = reason
        if self.predictor is None:
            self.health = Health.NO_MODEL
        log.warning("%s (%s)", reason, "still serving " + self.predictor.version if self.predictor else "no model loaded")

    def start_following(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.poll_seconds):
                self.refresh()

        threading.Thread(target=loop, name="model-follower", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
