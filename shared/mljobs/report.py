"""The training report: one HTML page with plots, written into the model version's folder."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .schema import CLASSIFICATION, FeatureSchema

REPORT_FILE = "report.html"
TOP_FEATURES = 20


@dataclass
class Evaluation:
    """What the report shows: held-out truth and predictions, and feature importances."""

    truth: np.ndarray  # class indices, or target values
    raw: np.ndarray  # class probabilities, or predicted values
    importances: np.ndarray | None


def write_report(folder: Path, schema: FeatureSchema, metadata: dict[str, Any], evaluation: Evaluation) -> list[str]:
    # Home is read-only; /tmp is the job's tmpfs (bandit B108 does not apply).
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/matplotlib")  # nosec B108
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: list[tuple[str, str]] = []

    def save(fig: Any, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        plots.append((name, title))

    if evaluation.importances is not None:
        save(_importance_plot(plt, schema, evaluation.importances), "plot-importance.png", "Feature importance")
    if schema.task == CLASSIFICATION:
        if len(schema.classes) == 2 and len(np.unique(evaluation.truth)) == 2:
            save(_roc_plot(plt, evaluation), "plot-roc.png", "ROC curve (held-out rows)")
        save(_confusion_plot(plt, schema, evaluation), "plot-confusion.png", "Confusion matrix (held-out rows)")
    else:
        save(_residual_plot(plt, evaluation), "plot-residuals.png", "Residuals (held-out rows)")
    (folder / REPORT_FILE).write_text(_page(schema, metadata, plots))
    return [REPORT_FILE] + [name for name, _ in plots]


def _importance_plot(plt: Any, schema: FeatureSchema, importances: np.ndarray) -> Any:
    order = np.argsort(importances)[-TOP_FEATURES:]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(order) + 1.2))
    ax.barh([schema.names[i] for i in order], importances[order], color="#3b6ea5")
    ax.set_xlabel("importance")
    return fig


def _roc_plot(plt: Any, evaluation: Evaluation) -> Any:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(evaluation.truth, evaluation.raw[:, 1])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, color="#3b6ea5", label=f"AUC {roc_auc_score(evaluation.truth, evaluation.raw[:, 1]):.3f}")
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    return fig


def _confusion_plot(plt: Any, schema: FeatureSchema, evaluation: Evaluation) -> Any:
    from sklearn.metrics import confusion_matrix

    n = len(schema.classes)
    matrix = confusion_matrix(evaluation.truth, np.argmax(evaluation.raw, axis=1), labels=list(range(n)))
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


def _residual_plot(plt: Any, evaluation: Evaluation) -> Any:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(evaluation.raw, evaluation.truth - evaluation.raw, s=6, alpha=0.5, color="#3b6ea5")
    ax.axhline(0, color="#999", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    return fig


def _page(schema: FeatureSchema, metadata: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    e = html.escape
    metric_rows = "".join(f"<tr><td>{e(k)}</td><td>{v:.4f}</td></tr>" for k, v in metadata["metrics"].items())
    feature_rows = "".join(
        f"<tr><td>{e(f.name)}</td><td>{e(f.kind)}</td><td>{e(f.dtype)}</td>"
        f"<td>{e(', '.join(f.categories[:12]) + (' ...' if len(f.categories) > 12 else ''))}</td></tr>"
        for f in schema.features
    )
    figures = "".join(f'<figure><img src="{e(name)}" alt="{e(title)}"><figcaption>{e(title)}</figcaption></figure>' for name, title in plots)
    rows = metadata.get("rows", {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(metadata['model'])} training report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}}
figure{{display:inline-block;margin:1rem}}img{{max-width:100%}}</style></head><body>
<h1>{e(metadata['model'])} — training report</h1>
<p>Run {e(metadata['run_id'])}, {e(metadata['created'])}. Estimator {e(metadata['estimator']['name'])},
task {e(schema.task)}, target <code>{e(schema.target)}</code>.
Rows: {rows.get('in', '?')} in, {e(metadata['evaluation'])}.</p>
<h2>Held-out metrics</h2><table><tr><th>metric</th><th>value</th></tr>{metric_rows}</table>
<h2>Plots</h2>{figures}
<h2>Features</h2><table><tr><th>name</th><th>kind</th><th>dtype</th><th>categories</th></tr>{feature_rows}</table>
</body></html>
"""
