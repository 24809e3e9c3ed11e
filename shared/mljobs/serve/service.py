"""The scoring service behind every protocol: which model answers, and records or columns in,
raw scores (or explanations) out. It knows no HTTP and no protocol; the adapters in protocols/ do
the talking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InvalidRecordsError, UsageError
from ..predictor import Predictor
from ..store import ModelRef, ModelStore
from .errors import ApiError
from .holder import ModelHolder, Readiness
from .metrics import ServerMetrics
from .registry import ModelRegistry


@dataclass(frozen=True)
class Columns:
    """Feature values by name, every list `rows` long (the columnar protocols' shape)."""

    values: Mapping[str, Sequence[Any]]
    rows: int


class ScoringService:
    def __init__(self, registry: ModelRegistry, metrics: ServerMetrics):
        self.registry, self.metrics = registry, metrics

    @property
    def holder(self) -> ModelHolder:
        """The default model's holder: what the unscoped routes and the probes answer for."""
        return self.registry.default

    @property
    def store(self) -> ModelStore:
        return self.registry.store

    @property
    def ref(self) -> ModelRef:
        return self.registry.default.ref

    def readiness(self, name: str | None = None, version: str | None = None) -> Readiness:
        """The default model's readiness, or a named model's (loading it: a ready probe warms it)."""
        return self.registry.holder(name, version).readiness() if name is not None else self.holder.readiness()

    def model(self, name: str | None = None, version: str | None = None) -> Predictor:
        """The predictor a request uses from start to end: the default model, or the one named
        (404 when the store has no such model or version)."""
        return self.registry.predictor(name, version)

    def catalogue(self) -> list[dict[str, Any]]:
        return self.registry.catalogue()

    def matrix(self, predictor: Predictor, batch: Sequence[Any] | Columns) -> np.ndarray:
        """The feature matrix of records (a list of objects) or columns; bad fields become a 422."""
        try:
            if isinstance(batch, Columns):
                return predictor.featurizer.transform_columns(batch.values, batch.rows)
            return predictor.featurizer.transform_records(batch)
        except InvalidRecordsError as exc:
            raise ApiError.invalid_records(exc) from None

    def score(self, predictor: Predictor, batch: Sequence[Any] | Columns) -> np.ndarray:
        """Raw scores for records or columns."""
        return self.score_matrix(predictor, self.matrix(predictor, batch))

    def score_matrix(self, predictor: Predictor, matrix: np.ndarray) -> np.ndarray:
        raw = predictor.predict_raw(matrix, threads=1)  # one thread per worker: OpenMP and fork do not mix
        self.metrics.predictions.inc(len(matrix))
        return raw

    def explain(self, predictor: Predictor, matrix: np.ndarray, top_k: int | None) -> list[dict[str, Any]]:
        """Per-row feature attributions (BigQuery ML's shape); a 400 for estimators without them."""
        try:
            return predictor.explain(matrix, top_k=top_k, threads=1)
        except UsageError as exc:
            raise ApiError(400, "explanations_unavailable", str(exc)) from None
