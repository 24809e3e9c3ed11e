"""The scoring service behind every protocol: which model answers, and records or columns in,
raw scores out. It knows no HTTP and no protocol; the adapters in protocols/ do the talking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InvalidRecordsError
from ..predictor import Predictor
from ..store import ModelRef
from .errors import ApiError
from .holder import ModelHolder, Readiness
from .metrics import ServerMetrics


@dataclass(frozen=True)
class Columns:
    """Feature values by name, every list `rows` long (the columnar protocols' shape)."""

    values: Mapping[str, Sequence[Any]]
    rows: int


class ScoringService:
    def __init__(self, holder: ModelHolder, metrics: ServerMetrics):
        self.holder, self.metrics = holder, metrics

    @property
    def ref(self) -> ModelRef:
        return self.holder.ref

    def readiness(self) -> Readiness:
        return self.holder.readiness()

    def model(self, name: str | None = None) -> Predictor:
        """The predictor a request uses from start to end (one request, one version)."""
        if name is not None and name != self.ref.name:
            raise ApiError(404, "not_found", f"model '{name}' is not served here (this server serves '{self.ref.name}')")
        predictor = self.holder.predictor
        if predictor is None:
            raise ApiError(503, "model_unavailable", self.holder.last_error or "the model is still loading")
        return predictor

    def score(self, predictor: Predictor, batch: Sequence[Any] | Columns) -> np.ndarray:
        """Raw scores for records (a list of objects) or columns; bad fields become a 422."""
        try:
            if isinstance(batch, Columns):
                matrix, rows = predictor.featurizer.transform_columns(batch.values, batch.rows), batch.rows
            else:
                matrix, rows = predictor.featurizer.transform_records(batch), len(batch)
        except InvalidRecordsError as exc:
            raise ApiError.invalid_records(exc) from None
        raw = predictor.predict_raw(matrix, threads=1)  # one thread per worker: OpenMP and fork do not mix
        self.metrics.predictions.inc(rows)
        return raw
