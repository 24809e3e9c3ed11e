"""Held-out metrics: what a person reads to decide whether a model is any good."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classification_metrics(labels: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """`labels` are class indices, `proba` the rows x classes probabilities."""
    predicted = np.argmax(proba, axis=1)
    n_classes = proba.shape[1]
    out = {
        "accuracy": skm.accuracy_score(labels, predicted),
        "log_loss": skm.log_loss(labels, proba, labels=list(range(n_classes))),
        "f1": skm.f1_score(labels, predicted, average="binary" if n_classes == 2 else "macro"),
    }
    if len(np.unique(labels)) == n_classes:  # AUC needs every class in the held-out rows
        out["roc_auc"] = (
            skm.roc_auc_score(labels, proba[:, 1])
            if n_classes == 2
            else skm.roc_auc_score(labels, proba, multi_class="ovr", labels=list(range(n_classes)))
        )
    return {k: round(float(v), 6) for k, v in out.items()}


def regression_metrics(values: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    out = {
        "rmse": float(np.sqrt(skm.mean_squared_error(values, predicted))),
        "mae": skm.mean_absolute_error(values, predicted),
        "r2": skm.r2_score(values, predicted),
    }
    return {k: round(float(v), 6) for k, v in out.items()}
