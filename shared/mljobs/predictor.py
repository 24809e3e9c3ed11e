"""A verified model loaded from the store, and the shapes its predictions take at every door."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import explain
from .errors import ModelError
from .estimators import LOADERS, Estimator
from .featurize import Features, Featurizer
from .schema import CLASSIFICATION, FeatureSchema
from .manifest import VerifiedVersion, verify_folder
from .store import ModelRef, ModelStore

SCHEMA_FILE, METADATA_FILE = "schema.json", "metadata.json"
# Libraries whose file formats a model depends on, and how much of the version must match.
FORMAT_LIBRARIES = {"lightgbm": 1, "scikit-learn": 2, "skops": 2}


@dataclass
class Predictor:
    name: str
    version: str
    schema: FeatureSchema
    metadata: dict[str, Any]
    estimator: Estimator
    featurizer: Featurizer

    @property
    def is_classifier(self) -> bool:
        return self.schema.task == CLASSIFICATION

    def predict_raw(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        if len(matrix) == 0:  # a batch whose rows were all rejected
            return np.empty((0, len(self.schema.classes)) if self.is_classifier else 0)
        return self.estimator.predict_raw(matrix, threads)

    # --- explanations (see explain.py): margins, SHAP values, global importance ---------------

    def contributions(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        """SHAP values (rows, outputs, features + 1), the last entry the base value; they sum to raw_margin."""
        return explain.contributions(self.estimator, matrix, threads, explain.estimator_label(self.estimator, self.metadata))

    def raw_margin(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        """The raw score (rows, outputs) before sigmoid or softmax: one output unless multiclass."""
        return explain.raw_margin(self.estimator, matrix, threads, explain.estimator_label(self.estimator, self.metadata))

    def explain(self, matrix: np.ndarray, top_k: int | None = None, threads: int = 0) -> list[dict[str, Any]]:
        """BigQuery ML's ML.EXPLAIN_PREDICT shape per row, for the predicted class of a classifier."""
        return explain.explain_rows(self.contributions(matrix, threads), self.schema.names, len(self.schema.classes), top_k)

    def feature_importance(self) -> list[dict[str, Any]]:
        """BigQuery ML's ML.FEATURE_IMPORTANCE shape: feature, importance_weight, importance_gain."""
        return explain.feature_importance(self.estimator, self.schema.names)

    def score_table(self, table: pa.Table | pa.RecordBatch, proba: bool = False, threads: int = 0, first_row: int = 0) -> tuple[dict[str, Any], Features]:
        """Batch and SQL core: output columns for the rows that featurize cleanly, and the
        featurized batch itself (its errors name the rows left out, its mask picks the rest)."""
        features = self.featurizer.transform_table(table, first_row)
        return self.score_features(features, proba, threads), features

    def score_features(self, features: Features, proba: bool = False, threads: int = 0) -> dict[str, pa.Array]:
        """Output columns for the rows of a featurized batch that have no errors."""
        matrix = features.matrix[features.good_rows] if features.errors else features.matrix
        return self.output_columns(self.predict_raw(matrix, threads), proba)

    def labels(self, raw: np.ndarray) -> list[Any]:
        classes = self.schema.classes
        return [classes[i] for i in np.argmax(raw, axis=1)]

    def output_columns(self, raw: np.ndarray, proba: bool) -> dict[str, pa.Array]:
        """Batch and SQL shape: a `prediction` column, plus `proba_<class>` columns if asked."""
        if not self.is_classifier:
            return {"prediction": pa.array(raw, pa.float64())}
        columns = {"prediction": pa.array(list(self.schema.classes)).take(np.argmax(raw, axis=1))}
        if proba:
            for i, label in enumerate(self.schema.classes):
                columns[f"proba_{label}"] = pa.array(raw[:, i], pa.float64())
        return columns

    def output_records(self, raw: np.ndarray) -> list[dict[str, Any]]:
        """HTTP shape: one object per record, probabilities by class for classifiers."""
        if not self.is_classifier:
            return [{"prediction": float(v)} for v in raw]
        classes = [str(c) for c in self.schema.classes]
        return [
            {"prediction": label, "probabilities": dict(zip(classes, map(float, row)))}
            for label, row in zip(self.labels(raw), raw)
        ]


def installed_version(library: str) -> str | None:
    try:
        return importlib_metadata.version(library)
    except importlib_metadata.PackageNotFoundError:
        return None


def check_libraries(where: str, recorded: dict[str, str], needed: list[str]) -> None:
    for library in needed:
        saved, here = recorded.get(library), installed_version(library)
        parts = FORMAT_LIBRARIES.get(library, 1)
        if saved is None or here is None or saved.split(".")[:parts] != here.split(".")[:parts]:
            raise ModelError(
                f"model {where} is refused: it was saved with {library} {saved}, this image has {here}"
            )


def load_predictor(store: ModelStore, ref: ModelRef | str, strict_categories: bool = False) -> Predictor:
    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    return load_verified(store.open_version(ref.name, store.resolve(ref)), strict_categories)


def load_version(folder: Path, name: str, version: str, strict_categories: bool = False, key: bytes | None = None) -> Predictor:
    """A model version from a local folder (shipped to a Spark executor, say), verified first."""
    return load_verified(verify_folder(folder, key, name, version), strict_categories)


def load_verified(verified: VerifiedVersion, strict_categories: bool = False) -> Predictor:
    """A predictor built from a checked version's bytes alone: nothing is read from the store."""
    where = verified.label
    try:
        schema = FeatureSchema.from_json(verified.text(SCHEMA_FILE))
        meta = json.loads(verified.text(METADATA_FILE))
    except (KeyError, ValueError) as exc:
        raise ModelError(f"model {where} is refused: unreadable schema or metadata ({exc})") from exc
    kind = meta.get("estimator", {}).get("kind")
    if kind not in LOADERS:
        raise ModelError(f"model {where} is refused: unknown estimator kind {kind!r}")
    check_libraries(where, meta.get("libraries", {}), meta["estimator"].get("libraries", []))
    estimator = LOADERS[kind](verified, schema)
    return Predictor(verified.name, verified.version, schema, meta, estimator, Featurizer(schema, strict_categories))
