"""The training report's plots (matplotlib, train image only): feature importance as gain and
split count, ROC, confusion matrix, calibration for classifiers, residuals for regressors."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .schema import FeatureSchema

TOP_FEATURES = 20
BLUE, GREY = "#3b6ea5", "#999"
CALIBRATION_BINS = 10


def importance_plot(plt: Any, names: Sequence[str], gain: np.ndarray, split: np.ndarray | None) -> Any:
    """Gain beside split count, features in the order of their gain (the top 20)."""
    order = np.argsort(gain)[-TOP_FEATURES:]
    panels = [("gain (total loss reduction)", gain)] + ([("split count (times used)", split)] if split is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.35 * len(order) + 1.4), squeeze=False)
    for ax, (label, values) in zip(axes[0], panels):
        ax.barh([names[i] for i in order], values[order], color=BLUE)
        ax.set_xlabel(label)
    for ax in axes[0][1:]:
        ax.set_yticklabels([])
    return fig


def roc_plot(plt: Any, truth: np.ndarray, positive: np.ndarray) -> Any:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(truth, positive)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, color=BLUE, label=f"AUC {roc_auc_score(truth, positive):.3f}")
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    return fig


def confusion_plot(plt: Any, schema: FeatureSchema, truth: np.ndarray, raw: np.ndarray) -> Any:
    from sklearn.metrics import confusion_matrix

    n = len(schema.classes)
    matrix = confusion_matrix(truth, np.argmax(raw, axis=1), labels=list(range(n)))
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
    ax.imshow(matrix, cmap="Blues")
    labels = [str(c) for c in schema.classes]
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    return fig


def calibration_points(truth: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of predicted probability: its mean, the observed rate and the row count. Binary:
    P(second class) against how often it is true; more classes: the top class's probability
    against how often it is right."""
    if raw.shape[1] == 2:
        predicted, observed = raw[:, 1], (truth == 1).astype(np.float64)
    else:
        predicted, observed = raw.max(axis=1), (np.argmax(raw, axis=1) == truth).astype(np.float64)
    bins = np.minimum((predicted * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    counts = np.bincount(bins, minlength=CALIBRATION_BINS)
    used = counts > 0
    mean_predicted = np.bincount(bins, predicted, CALIBRATION_BINS)[used] / counts[used]
    rate = np.bincount(bins, observed, CALIBRATION_BINS)[used] / counts[used]
    return mean_predicted, rate, counts[used]


def calibration_plot(plt: Any, schema: FeatureSchema, truth: np.ndarray, raw: np.ndarray) -> Any:
    predicted, rate, counts = calibration_points(truth, raw)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="perfectly calibrated")
    ax.plot(predicted, rate, marker="o", color=BLUE, label="model")
    for x, y, n in zip(predicted, rate, counts):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color=GREY)
    binary = len(schema.classes) == 2
    ax.set_xlabel(f"predicted P({schema.classes[1]})" if binary else "predicted probability of the top class")
    ax.set_ylabel(f"observed share of {schema.classes[1]}" if binary else "share predicted right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return fig


def residual_plot(plt: Any, truth: np.ndarray, predicted: np.ndarray) -> Any:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(predicted, truth - predicted, s=6, alpha=0.5, color=BLUE)
    ax.axhline(0, color=GREY, linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    return fig
