"""Explanations as Arrow columns, named as BigQuery ML's ML.EXPLAIN_PREDICT names them, built
for a whole batch at once (batch job and SQL): no Python object per row on the Parquet path."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import MljobsError
from .explain import ExplainUnavailable, TextBoosted, estimator_label, explained_values
from .manifest import VerifiedVersion
from .predictor import Predictor

ATTRIBUTION = pa.struct([("feature", pa.string()), ("attribution", pa.float64())])
EXPLANATION_FIELDS = [
    pa.field("top_feature_attributions", pa.list_(ATTRIBUTION)),
    pa.field("baseline_prediction_value", pa.float64()),
    pa.field("prediction_value", pa.float64()),
    pa.field("approximation_error", pa.float64()),
]


def require_explanations(predictor: Predictor) -> None:
    """Refuse before any work is done when the model's estimator has no contributions."""
    if not isinstance(predictor.estimator, TextBoosted):
        raise ExplainUnavailable(estimator_label(predictor.estimator, predictor.metadata))


def explanation_columns(predictor: Predictor, matrix: np.ndarray, top_k: int | None = None, threads: int = 0,
                        as_json: bool = False, chosen: np.ndarray | None = None) -> dict[str, pa.Array]:
    """The four ML.EXPLAIN_PREDICT columns for the rows of `matrix`; `as_json` gives the
    attributions as JSON text (CSV cannot hold a list of structs); `chosen`: the class explained
    per row when a threshold picked it (else the most likely one)."""
    n_features = len(predictor.schema.names)
    values = predictor.contributions(matrix, threads)
    picked, _ = explained_values(values, len(predictor.schema.classes), chosen)
    features, baseline = picked[:, :-1], picked[:, -1]
    prediction = picked.sum(axis=1)
    k = n_features if top_k is None else max(1, min(top_k, n_features))
    order = np.argsort(-np.abs(features), axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(features, order, axis=1)
    names = pa.array(predictor.schema.names, pa.string()).take(pa.array(order.ravel()))
    offsets = pa.array(np.arange(0, len(matrix) * k + 1, k, dtype=np.int32))
    attributions = pa.ListArray.from_arrays(
        offsets, pa.StructArray.from_arrays([names, pa.array(chosen.ravel(), pa.float64())], fields=list(ATTRIBUTION))
    )
    top: pa.Array = attributions
    if as_json:
        top = pa.array([json.dumps(row) for row in attributions.to_pylist()], pa.string())
    return {
        "top_feature_attributions": top,
        "baseline_prediction_value": pa.array(baseline, pa.float64()),
        "prediction_value": pa.array(prediction, pa.float64()),
        # TreeSHAP is exact: what is left is floating-point rounding over every feature.
        "approximation_error": pa.array(np.abs(prediction - (baseline + features.sum(axis=1))), pa.float64()),
    }


def global_importance(verified: VerifiedVersion) -> list[dict[str, Any]]:
    """A verified version's feature importance (ML.FEATURE_IMPORTANCE's rows), largest gain first."""
    from .predictor import load_verified

    try:
        rows = load_verified(verified).feature_importance()
    except MljobsError:  # `show` still shows the rest of a version this image cannot load
        return []
    return sorted(rows, key=lambda r: -(r["importance_gain"] or 0.0))


def print_importance(rows: list[dict[str, Any]]) -> None:
    """`models show`'s importance table: split count and total gain per feature."""
    if not rows:
        return
    width = max(len(r["feature"]) for r in rows)
    print(f"importance  {'feature':<{width}}  {'weight':>8}  {'gain':>12}")
    for r in rows:
        weight = "-" if r["importance_weight"] is None else str(r["importance_weight"])
        gain = "-" if r["importance_gain"] is None else f"{r['importance_gain']:.4g}"
        print(f"            {r['feature']:<{width}}  {weight:>8}  {gain:>12}")
