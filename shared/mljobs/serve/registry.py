"""Every model of the store behind one server: a holder per model reference, loaded on first use
and each verified, the least recently used unloaded past MLJOBS_MAX_MODELS models or
MLJOBS_MAX_MODEL_MB of model files. The default model (MLJOBS_MODEL) is loaded at start and is
what the unscoped routes answer with; a model named in a path follows its alias (the default's
own when it is the default model, else production, else latest) unless the path names a version,
which is then served exactly."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any
from ..errors import ModelError, UsageError
from ..objectstore import STORE_OUTAGES
from ..predictor import Predictor
from ..store import ModelRef, ModelStore
from .errors import ApiError
from .holder import ModelHolder
from .metrics import ServerMetrics

log = logging.getLogger("mljobs.serve")


class ModelRegistry:
    def __init__(self, store: ModelStore, default: ModelRef, metrics: ServerMetrics, poll_seconds: float,
                 stale_after: float | None = None, max_models: int = 8, max_bytes: int | None = None):
        self.store, self.metrics, self.poll_seconds, self.stale_after = store, metrics, poll_seconds, stale_after
        self.max_models, self.max_bytes = max(1, max_models), max_bytes
        self.default = self._new_holder(default)
        self._holders: OrderedDict[str, ModelHolder] = OrderedDict({str(default): self.default})  # least recent first
        self._lock = threading.Lock()

    def _new_holder(self, ref: ModelRef) -> ModelHolder:
        return ModelHolder(self.store, ref, self.metrics, self.poll_seconds, self.stale_after)

    def start(self) -> None:
        self.default.refresh()
        self.default.start_following()

    def stop(self) -> None:
        for holder in list(self._holders.values()):
            holder.stop()

    # --- which holder answers ---------------------------------------------------------------------

    def ref_for(self, name: str, version: str | None = None) -> ModelRef:
        """The reference a path means: the default's own for the default model, else the model's
        default alias; a version named in the path is served exactly."""
        try:
            if version is not None:
                return ModelRef.parse(f"{name}:{version}")
            return self.default.ref if name == self.default.ref.name else ModelRef.parse(name)
        except UsageError as exc:  # not a name the store could hold
            raise ApiError(404, "not_found", str(exc)) from None

    def predictor(self, name: str | None = None, version: str | None = None) -> Predictor:
        """The verified model a request uses from start to end (one request, one version)."""
        holder = self._holder(name, version)
        predictor = holder.predictor or self._load(holder)  # what this request loaded, even if evicted since
        if predictor is None:
            raise ApiError(503, "model_unavailable", holder.last_error or "the model is still loading")
        return predictor

    def holder(self, name: str | None = None, version: str | None = None) -> ModelHolder:
        """The holder for a model (the default when no name is given), loaded and verified."""
        holder = self._holder(name, version)
        if holder.predictor is None:
            self._load(holder)
        return holder

    def _holder(self, name: str | None, version: str | None) -> ModelHolder:
        if name is None:
            return self.default
        ref = self.ref_for(name, version)
        if version is not None and self._serves(name, version):
            ref = self.ref_for(name)  # the followed holder serves that version right now: no second copy
        return self._existing(str(ref)) or self._admit(ref)

    def _load(self, holder: ModelHolder) -> Predictor | None:
        predictor = holder.ensure_loaded(follow=holder.ref.version is None)
        self._make_room(keep=holder)  # only a load can take the worker past its bounds
        return predictor

    def _serves(self, name: str, version: str) -> bool:
        holder = self._holders.get(str(self.ref_for(name)))
        predictor = holder.predictor if holder else None
        return predictor is not None and predictor.version == version

    def _existing(self, key: str) -> ModelHolder | None:
        with self._lock:
            holder = self._holders.get(key)
            if holder is not None:
                self._holders.move_to_end(key)
            return holder

    def _admit(self, ref: ModelRef) -> ModelHolder:
        """A holder for a reference not asked for before: it must name something in the store."""
        try:
            self.store.resolve(ref)
        except ModelError as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except STORE_OUTAGES as exc:
            raise ApiError(503, "store_unavailable", f"the model store cannot be read: {exc}") from None
        with self._lock:
            holder = self._holders.setdefault(str(ref), self._new_holder(ref))
            self._holders.move_to_end(str(ref))
            return holder

    def _make_room(self, keep: ModelHolder) -> None:
        """Unload the least recently used models past the bounds, never the one in use."""
        with self._lock:
            loaded = [h for h in self._holders.values() if h.predictor is not None]
            victims, count, size = [], len(loaded), sum(h.size_bytes for h in loaded)
            for holder in loaded:
                over = count > self.max_models or (self.max_bytes is not None and size > self.max_bytes)
                if not over:
                    break
                if holder is keep:
                    continue
                victims.append(holder)
                count, size = count - 1, size - holder.size_bytes
        for holder in victims:
            log.info("unloading %s to keep within %d models", holder.ref, self.max_models)
            holder.unload()

    def loaded_count(self) -> int:
        return sum(h.predictor is not None for h in list(self._holders.values()))

    def current(self, name: str, version: str | None = None) -> Predictor | None:
        """The version of a model (or the version named) this worker holds now, loading nothing."""
        holder = self._holders.get(str(self.default.ref if name == self.default.ref.name else ModelRef(name)))
        predictor = holder.predictor if holder else None
        if version is None or (predictor is not None and predictor.version == version):
            return predictor
        pinned = self._holders.get(f"{name}:{version}")
        return pinned.predictor if pinned else None

    # --- what a listing shows -------------------------------------------------------------------

    def catalogue(self) -> list[dict[str, Any]]:
        """Every model in the store: its versions and aliases, the version a request without one
        gets, and the version this worker has loaded (None when it has not)."""
        try:
            names = self.store.names()
            models = [(name, self.store.versions(name), self.store.aliases(name)) for name in names]
        except STORE_OUTAGES as exc:
            raise ApiError(503, "store_unavailable", f"the model store cannot be read: {exc}") from None
        listing = []
        for name, versions, aliases in models:
            if not versions:
                continue
            ref = self.ref_for(name)
            try:
                serves: str | None = self.store.resolve(ref)
            except ModelError:
                serves = None
            loaded = self.current(name)
            listing.append({"name": name, "versions": versions, "aliases": aliases, "follows": str(ref), "serves": serves,
                            "loaded": loaded.version if loaded else None, "default": name == self.default.ref.name})
        return listing
