"""Why a row got its score: per-row feature contributions (SHAP values) and global importance.

LightGBM computes exact TreeSHAP values from its text model (`pred_contrib=True`; the compiled
predictor has none). Contributions are in margin space (before sigmoid or softmax), where they
add up exactly: the base value plus every feature's contribution is the raw score. Shapes and
names follow BigQuery ML's ML.EXPLAIN_PREDICT and ML.FEATURE_IMPORTANCE.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from .cpus import usable_cpus
from .errors import UsageError


class ExplainUnavailable(UsageError):
    """The model's estimator offers no per-row contributions (exit 2, HTTP 400)."""

    def __init__(self, estimator: str):
        super().__init__(f"explanations are not available for estimator {estimator}")


@runtime_checkable
class TextBoosted(Protocol):
    """An estimator that can hand out LightGBM's text booster (the text or compiled model)."""

    n_classes: int

    def text_booster(self) -> Any: ...


def estimator_label(estimator: Any, metadata: dict[str, Any] | None = None) -> str:
    name = (metadata or {}).get("estimator", {}).get("name")
    return str(name or getattr(estimator, "kind", type(estimator).__name__))


def outputs_of(n_classes: int) -> int:
    """Margin columns: one for regression and binary classifiers, one per class beyond that."""
    return n_classes if n_classes > 2 else 1


def contributions(estimator: Any, matrix: np.ndarray, threads: int = 0, label: str | None = None) -> np.ndarray:
    """SHAP values, shape (rows, outputs, features + 1): the last entry is the base value."""
    if not isinstance(estimator, TextBoosted):
        raise ExplainUnavailable(label or estimator_label(estimator))
    booster, outputs = estimator.text_booster(), outputs_of(estimator.n_classes)
    width = booster.num_feature() + 1
    if len(matrix) == 0:
        return np.empty((0, outputs, width))
    values = np.asarray(booster.predict(matrix, pred_contrib=True, num_threads=threads or usable_cpus()), dtype=np.float64)
    # LightGBM lays the classes side by side: (rows, outputs * (features + 1)).
    return values.reshape(len(matrix), outputs, width)


def raw_margin(estimator: Any, matrix: np.ndarray, threads: int = 0, label: str | None = None) -> np.ndarray:
    """The raw score (rows, outputs) that contributions sum to."""
    if not isinstance(estimator, TextBoosted):
        raise ExplainUnavailable(label or estimator_label(estimator))
    outputs = outputs_of(estimator.n_classes)
    if len(matrix) == 0:
        return np.empty((0, outputs))
    raw = np.asarray(estimator.text_booster().predict(matrix, raw_score=True, num_threads=threads or usable_cpus()), dtype=np.float64)
    return raw.reshape(len(matrix), outputs)


def explained_class(margins: np.ndarray, n_classes: int) -> np.ndarray:
    """The predicted class index per row (a binary margin above 0 is class 1)."""
    if n_classes > 2:
        return np.asarray(np.argmax(margins, axis=1))
    if n_classes == 2:
        return (margins[:, 0] > 0).astype(np.int64)
    return np.zeros(len(margins), dtype=np.int64)


def explained_values(values: np.ndarray, n_classes: int, chosen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the contributions (rows, features + 1) of the predicted class's margin, and that
    class (given, when a threshold decided it): for a binary model, class 0's margin is minus
    class 1's, so its values are negated."""
    if chosen is None:
        chosen = explained_class(values.sum(axis=2), n_classes)
    if n_classes > 2:
        return values[np.arange(len(values)), chosen], chosen
    picked = values[:, 0]
    if n_classes == 2:
        picked = np.where((chosen == 0)[:, None], -picked, picked)
    return picked, chosen


def top_attributions(row: np.ndarray, names: list[str], top_k: int | None) -> list[dict[str, Any]]:
    """A row's feature contributions (base value excluded), largest magnitude first."""
    order = np.argsort(-np.abs(row), kind="stable")
    if top_k is not None:
        order = order[:top_k]
    return [{"feature": names[i], "attribution": float(row[i])} for i in order]


def explain_rows(values: np.ndarray, names: list[str], n_classes: int, top_k: int | None = None) -> list[dict[str, Any]]:
    """One BigQuery-ML-shaped explanation per row from contributions (rows, outputs, features + 1)."""
    if top_k is not None and top_k < 1:
        raise UsageError(f"top_k must be at least 1, not {top_k}")
    picked, _ = explained_values(values, n_classes)
    out = []
    for row in picked:
        features, baseline = row[:-1], float(row[-1])
        prediction = float(row.sum())
        out.append({
            "top_feature_attributions": top_attributions(features, names, top_k),
            "baseline_prediction_value": baseline,
            "prediction_value": prediction,
            # TreeSHAP is exact: what is left is floating-point rounding over every feature.
            "approximation_error": abs(prediction - (baseline + float(np.sum(features)))),
        })
    return out


def feature_importance(estimator: Any, names: list[str]) -> list[dict[str, Any]]:
    """Per feature: importance_weight (times used in a split) and importance_gain (total gain)."""
    if isinstance(estimator, TextBoosted):
        booster = estimator.text_booster()
        weight = booster.feature_importance(importance_type="split")
        gain = booster.feature_importance(importance_type="gain")
        return [{"feature": n, "importance_weight": int(w), "importance_gain": float(g)} for n, w, g in zip(names, weight, gain)]
    final = estimator.model.steps[-1][1] if hasattr(getattr(estimator, "model", None), "steps") else getattr(estimator, "model", None)
    trees = _sklearn_trees(final)
    weights: list[int | None] = [None] * len(names)
    if trees:
        counts = np.zeros(len(names), dtype=np.int64)
        for tree in trees:
            used = tree.feature[tree.feature >= 0]
            counts += np.bincount(used, minlength=len(names))[: len(names)]
        weights = [int(c) for c in counts]
    gains = estimator.importances() if hasattr(estimator, "importances") else None
    return [
        {"feature": n, "importance_weight": w, "importance_gain": None if gains is None else float(gains[i])}
        for i, (n, w) in enumerate(zip(names, weights))
    ]


def _sklearn_trees(model: Any) -> list[Any]:
    """The fitted `tree_` objects of a scikit-learn tree or forest (empty for anything else)."""
    if hasattr(model, "tree_"):
        return [model.tree_]
    members = getattr(model, "estimators_", None)
    if members is None:
        return []
    flat = np.asarray(members, dtype=object).ravel()  # gradient boosting keeps a 2-D array of trees
    return [m.tree_ for m in flat if hasattr(m, "tree_")]
