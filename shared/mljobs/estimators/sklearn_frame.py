"""A scikit-learn model that takes the raw columns (a Pipeline whose ColumnTransformer one-hot
encodes a text column, say), as models imported from MLflow often are.

Every door still goes through the one featurizer: its matrix holds a category as its index in the
schema's levels, so this wrapper turns the matrix back into named columns (the level's text, a
number, true/false) and hands the model an Arrow table, which scikit-learn reads by column name.
Saved with skops and loaded through the same allow-list as any scikit-learn model, plus the types
an import let in with --trust-pickle, which the version's metadata records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..manifest import VerifiedVersion
from ..schema import BOOLEAN, CATEGORICAL, CLASSIFICATION, FeatureSchema
from .sklearn_model import load_skops_model, save_skops_model

METADATA_FILE = "metadata.json"  # predictor.METADATA_FILE (predictor imports this package, so not from there)


def raw_columns(schema: FeatureSchema, matrix: np.ndarray) -> pa.Table:
    """The featurized matrix as the named columns the model was fitted on (missing: null)."""
    columns: dict[str, pa.Array] = {}
    for j, feature in enumerate(schema.features):
        values = matrix[:, j]
        missing = np.isnan(values)
        if feature.kind == CATEGORICAL:
            levels = np.asarray(feature.categories + ("",), dtype=object)
            codes = np.where(missing, len(feature.categories), values).astype(np.int64)
            columns[feature.name] = pa.array(levels[codes], pa.string(), mask=missing)
        elif feature.kind == BOOLEAN and not missing.any():
            columns[feature.name] = pa.array(values.astype(bool))
        else:
            columns[feature.name] = pa.array(values, pa.float64())
    return pa.table(columns)


class SklearnFrameEstimator:
    kind = "sklearn-frame"
    libraries: tuple[str, ...] = ("scikit-learn", "skops")

    def __init__(self, model: Any, schema: FeatureSchema):
        self.model = model
        self.schema = schema
        self.classifier = schema.task == CLASSIFICATION
        # Fitted on named columns (a DataFrame), or taking text: the raw columns; else a plain matrix.
        self.named = hasattr(model, "feature_names_in_") or any(f.kind == CATEGORICAL for f in schema.features)

    def predict_raw(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        rows = raw_columns(self.schema, matrix) if self.named else matrix
        if self.classifier:
            return np.asarray(self.model.predict_proba(rows), dtype=np.float64)
        return np.asarray(self.model.predict(rows), dtype=np.float64).reshape(-1)

    def save(self, folder: Path) -> list[str]:
        return save_skops_model(self.model, folder)

    def importances(self) -> np.ndarray | None:
        return None  # the model's own features are the encoded columns, not ours

    @classmethod
    def load(cls, verified: VerifiedVersion, schema: FeatureSchema) -> SklearnFrameEstimator:
        meta = json.loads(verified.text(METADATA_FILE))
        # Types beyond the allow-list that the importer let in with --trust-pickle, as its version records.
        extra = frozenset(meta.get("imported", {}).get("trusted_types", [])) if meta.get("trust_pickle") else frozenset()
        return cls(load_skops_model(verified, extra), schema)


def load_sklearn_frame(verified: VerifiedVersion, schema: FeatureSchema) -> SklearnFrameEstimator:
    return SklearnFrameEstimator.load(verified, schema)
