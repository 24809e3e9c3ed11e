"""Training, free of any CLI: a table and a spec in, a fitted model with honest metrics out,
and publishing it (model files, schema, metadata, report) as one store version."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import BadInputError, InvalidRecordsError, UsageError
from .estimators import Estimator, fit_estimator
from .estimators.lightgbm_model import LightGBMEstimator
from .estimators.native_lightgbm import compile_native
from .featurize import Featurizer
from .metrics import classification_metrics, regression_metrics
from .predictor import METADATA_FILE, SCHEMA_FILE, installed_version
from .report import Evaluation, write_report
from .schema import CLASSIFICATION, FeatureSchema, infer_schema
from .store import ModelStore

log = logging.getLogger("mljobs.train")


@dataclass
class TrainSpec:
    target: str
    task: str = "auto"
    estimator: str = "lightgbm"
    params: dict[str, Any] = field(default_factory=dict)
    features: list[str] | None = None
    drop: list[str] = field(default_factory=list)
    valid_fraction: float = 0.2
    cv: int | None = None
    seed: int = 42


@dataclass
class TrainedModel:
    schema: FeatureSchema
    estimator: Estimator
    params: dict[str, Any]
    metrics: dict[str, float]
    evaluation: Evaluation
    description: str  # how the metrics were measured, for people
    rows: dict[str, int]


def feature_names(table: pa.Table, spec: TrainSpec) -> list[str]:
    named = set(spec.features or []) | set(spec.drop)
    unknown = sorted(named - set(table.column_names))
    if unknown:
        raise BadInputError(f"--features/--drop name column '{unknown[0]}', which is not in the data")
    if spec.features:
        return [c for c in spec.features if c not in spec.drop]
    return [c for c in table.column_names if c != spec.target and c not in spec.drop]


def encode_target(schema: FeatureSchema, column: pa.ChunkedArray) -> np.ndarray:
    if schema.task == CLASSIFICATION:
        codes = pc.index_in(column, value_set=pa.array(schema.classes, column.type))
        return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def score(schema: FeatureSchema, truth: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    if schema.task == CLASSIFICATION:
        return classification_metrics(truth.astype(np.int64), raw)
    return regression_metrics(truth, raw)


def holdout_split(rows: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < valid_fraction < 1:
        raise UsageError(f"--valid-fraction must be between 0 and 1, not {valid_fraction}")
    order = np.random.default_rng(seed).permutation(rows)
    n_valid = max(1, int(round(rows * valid_fraction)))
    if rows - n_valid < 2:
        raise BadInputError(f"only {rows} usable rows: too few to train and hold out {valid_fraction:.0%} of them")
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def train(table: pa.Table, spec: TrainSpec) -> TrainedModel:
    if spec.target in table.column_names and table.column(spec.target).null_count:
        log.warning("leaving out %d rows with no value in target column '%s'", table.column(spec.target).null_count, spec.target)
        table = table.filter(pc.is_valid(table.column(spec.target)))
    schema = infer_schema(table, spec.target, spec.task, feature_names(table, spec))
    featurized = Featurizer(schema).transform_table(table)
    if featurized.errors:
        raise InvalidRecordsError(featurized.errors)
    matrix, labels = featurized.matrix, encode_target(schema, table.column(spec.target))
    if spec.cv:
        return _cross_validated(schema, matrix, labels, spec)
    train_rows, valid_rows = holdout_split(len(labels), spec.valid_fraction, spec.seed)
    log.info("training %s (%s) on %d rows and %d features; %d rows held out",
             spec.estimator, schema.task, len(train_rows), len(schema.features), len(valid_rows))
    estimator, params = fit_estimator(spec.estimator, schema, matrix[train_rows], labels[train_rows], spec.params, spec.seed)
    raw = estimator.predict_raw(matrix[valid_rows])
    return TrainedModel(
        schema, estimator, params, score(schema, labels[valid_rows], raw),
        Evaluation(labels[valid_rows], raw, estimator.importances()),
        f"{len(train_rows)} rows trained, {len(valid_rows)} held out ({spec.valid_fraction:.0%})",
        {"in": len(labels), "train": len(train_rows), "valid": len(valid_rows)},
    )


def _cross_validated(schema: FeatureSchema, matrix: np.ndarray, labels: np.ndarray, spec: TrainSpec) -> TrainedModel:
    """K-fold metrics (their mean), then the published model trained on every row."""
    k = spec.cv or 0
    if not 2 <= k <= len(labels):
        raise UsageError(f"--cv must be between 2 and the number of rows ({len(labels)}), not {k}")
    folds = np.array_split(np.random.default_rng(spec.seed).permutation(len(labels)), k)
    fold_scores, truth, raw = [], [], []
    for i, valid_rows in enumerate(folds):
        train_rows = np.concatenate([f for j, f in enumerate(folds) if j != i])
        log.info("cross-validation fold %d/%d", i + 1, k)
        fold_model, _ = fit_estimator(spec.estimator, schema, matrix[train_rows], labels[train_rows], spec.params, spec.seed)
        fold_raw = fold_model.predict_raw(matrix[valid_rows])
        fold_scores.append(score(schema, labels[valid_rows], fold_raw))
        truth.append(labels[valid_rows])
        raw.append(fold_raw)
    metrics = {name: round(float(np.mean([s[name] for s in fold_scores if name in s])), 6) for name in fold_scores[0]}
    log.info("training %s on all %d rows", spec.estimator, len(labels))
    estimator, params = fit_estimator(spec.estimator, schema, matrix, labels, spec.params, spec.seed)
    return TrainedModel(
        schema, estimator, params, metrics,
        Evaluation(np.concatenate(truth), np.concatenate(raw), estimator.importances()),
        f"{k}-fold cross-validation (out-of-fold predictions), final model on all {len(labels)} rows",
        {"in": len(labels), "train": len(labels), "valid": len(labels)},
    )


def publish(store: ModelStore, name: str, trained: TrainedModel, provenance: dict[str, Any]) -> str:
    """Write the model, schema, metadata and report as the next version of `name`."""
    metadata = {
        "model": name,
        **provenance,
        "task": trained.schema.task,
        "estimator": {
            "kind": trained.estimator.kind,
            "name": trained.params.get("estimator", trained.estimator.kind),
            "params": trained.params,
            "libraries": list(trained.estimator.libraries),
        },
        "metrics": trained.metrics,
        "evaluation": trained.description,
        "rows": trained.rows,
        "libraries": {lib: installed_version(lib) for lib in ("lightgbm", "scikit-learn", "skops", "numpy", "pyarrow")},
    }

    def write_files(folder: Path) -> None:
        trained.estimator.save(folder)
        if trained.estimator.kind == LightGBMEstimator.kind and store.key is not None:
            # Compiled code is only ever loaded from a signed version, so unsigned stores skip it.
            started = time.monotonic()
            compile_native(folder)
            log.info("compiled a native predictor in %.1f s", time.monotonic() - started)
        (folder / SCHEMA_FILE).write_text(trained.schema.to_json())
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        write_report(folder, trained.schema, metadata, trained.evaluation)

    return store.publish(name, write_files)
