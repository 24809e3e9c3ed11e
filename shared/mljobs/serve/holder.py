"""The model a server worker answers with, and how it follows its alias (hot swap).

A background thread re-resolves the alias every few seconds; a new version is loaded and verified
off the request path and swapped in with one reference assignment, so requests see either the
old model or the new one, never a mix. A version that fails to load is refused and the old one
keeps serving. Whatever a round of following meets, the thread survives it and counts it; a
follower that has not finished a round for longer than `stale_after` makes the worker not ready.
A holder the registry unloads (least recently used) drops its model and stops following until a
request needs it again.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass

from ..errors import MljobsError
from ..objectstore import STORE_OUTAGES
from ..predictor import Predictor, load_verified
from ..store import ModelRef, ModelStore
from .metrics import ServerMetrics

log = logging.getLogger("mljobs.serve")


class Health(enum.Enum):
    STARTING = "starting"  # no round of following has finished yet
    READY = "ready"  # a verified model is loaded and its alias is being followed
    NO_MODEL = "no_model"  # no version could be loaded: missing, refused or unreadable
    NOT_FOLLOWING = "not_following"  # the follower has stalled past its bound: the model may be stale
    UNLOADED = "unloaded"  # it served, and was unloaded to make room: the next request loads it again


@dataclass(frozen=True)
class Readiness:
    state: Health
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.state in (Health.READY, Health.UNLOADED)


class ModelHolder:
    def __init__(self, store: ModelStore, ref: ModelRef, metrics: ServerMetrics, poll_seconds: float = 2.0,
                 stale_after: float | None = None):
        self.store, self.ref, self.metrics, self.poll_seconds = store, ref, metrics, poll_seconds
        # Ten missed rounds, and never under 30 s: a busy machine may delay a round or two.
        self.stale_after = stale_after if stale_after is not None else max(30.0, 10 * poll_seconds)
        self.predictor: Predictor | None = None
        self.size_bytes = 0  # the loaded version's files: what the registry's memory bound counts
        self.last_error: str | None = None
        self.refused: set[str] = set()
        self.unloaded = False
        self._rounds = 0
        self._last_round = time.monotonic()
        self._following = False
        self._stop = threading.Event()
        self._load_lock = threading.RLock()  # one load at a time; a round's result is applied under it

    # --- one round of following ----------------------------------------------------------------

    def refresh(self, stopped: threading.Event | None = None) -> None:
        """Load the version the reference points to now, if it is not the one being served.
        Never raises: every failure is recorded, counted and logged. A follower passes its stop
        signal: a round that ends after the holder was unloaded leaves the holder unloaded."""
        try:
            self._refresh(stopped)
        except Exception as exc:  # the follower must outlive anything a store can throw at it
            log.exception("following %s failed", self.ref)
            self._note_failure(f"following {self.ref.name} failed: {type(exc).__name__}: {exc}")
            self.metrics.follow_errors.inc()
        finally:
            self._rounds += 1
            self._last_round = time.monotonic()

    def _refresh(self, stopped: threading.Event | None) -> None:
        try:
            version = self.store.resolve(self.ref)
        except MljobsError as exc:
            self.metrics.follow_errors.inc()
            self._note_failure(str(exc))
            return
        current = self.predictor
        if (current is not None and current.version == version) or version in self.refused:
            return
        try:
            verified = self.store.open_version(self.ref.name, version)
            predictor = load_verified(verified)
        except STORE_OUTAGES as exc:  # the store, not the version, failed: try it again next round
            self.metrics.follow_errors.inc()
            self._note_failure(f"version {version} not loaded: {exc}")
            return
        except Exception as exc:  # a refused version, or a file that cannot be read or parsed
            self.refused.add(version)
            self.metrics.load_failures.labels(version).inc()
            reason = str(exc) if isinstance(exc, MljobsError) else f"{type(exc).__name__}: {exc}"
            self._note_failure(f"version {version} refused: {reason}")
            return
        with self._load_lock:
            if stopped is not None and stopped.is_set():
                return  # unloaded while this round loaded: the registry made room, keep it made
            self.predictor, self.last_error, self.unloaded = predictor, None, False
            self.size_bytes = sum(len(data) for data in verified.files.values())
            self.metrics.model_loads.labels(predictor.name).inc()
            self.metrics.serving(predictor.name, predictor.version, current.version if current else None)
        log.info("serving %s:%s", predictor.name, predictor.version)

    def _note_failure(self, reason: str) -> None:
        self.last_error = reason
        log.warning("%s (%s)", reason, "still serving " + self.predictor.version if self.predictor else "no model loaded")

    # --- state --------------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        """The one answer every probe gives (ping, health, v2 ready, the model's ready route)."""
        if self.predictor is None and self.unloaded:
            return Readiness(Health.UNLOADED)
        if self.predictor is None:
            return Readiness(Health.NO_MODEL if self._rounds else Health.STARTING, self.last_error or "the model is still loading")
        stalled = time.monotonic() - self._last_round
        if self._following and stalled > self.stale_after:
            return Readiness(Health.NOT_FOLLOWING, f"has not checked {self.ref.name}'s alias for {stalled:.0f} s "
                                                   f"(bound {self.stale_after:.0f} s): the model may be out of date")
        return Readiness(Health.READY)

    # --- the follower thread ------------------------------------------------------------------

    def start_following(self) -> None:
        stop = self._stop = threading.Event()  # each follower thread has its own stop signal

        def loop() -> None:
            while not stop.wait(self.poll_seconds):
                self.refresh(stop)

        self._following = True
        self._last_round = time.monotonic()
        threading.Thread(target=loop, name=f"follow-{self.ref}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    # --- loading on demand (the registry's side) ------------------------------------------------

    def ensure_loaded(self, follow: bool) -> Predictor | None:
        """The loaded model, loading it now if it was unloaded, never tried, or has no follower
        to try again (a pinned version after a store outage): one load however many threads ask."""
        with self._load_lock:
            if self.predictor is not None:
                return self.predictor
            if self.unloaded or self._rounds == 0 or not self._following:
                self.refresh()
                if follow and not self._following:
                    self.start_following()
            return self.predictor

    def unload(self) -> None:
        with self._load_lock:
            self.stop()
            self._following = False
            if self.predictor is not None:
                self.metrics.serving(self.predictor.name, None, self.predictor.version)
            self.predictor, self.size_bytes, self.unloaded = None, 0, True
            self.metrics.model_unloads.labels(self.ref.name).inc()
