"""The training report: one HTML page with plots, written into the model version's folder, and
report.json beside it (the baseline's metrics and the feature importances, for the overview).

The baseline is scored on the same held-out rows as the model: the majority class (with the
class shares as probabilities) for classifiers, the mean for regressors, so a reader sees at once
whether the model beats a constant."""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import report_plots
from .metric_direction import is_better
from .metrics import classification_metrics, regression_metrics
from .schema import CLASSIFICATION, FeatureSchema

REPORT_FILE = "report.html"
REPORT_DATA = "report.json"
LIGHTGBM_FILE = "model.lgb.txt"  # as estimators.lightgbm_model names it (not imported: no lightgbm needed here)


@dataclass
class Evaluation:
    """What the report shows: held-out truth and predictions, and feature importances."""

    truth: np.ndarray  # class indices, or target values
    raw: np.ndarray  # class probabilities, or predicted values
    importances: np.ndarray | None


def baseline(schema: FeatureSchema, truth: np.ndarray) -> dict[str, Any]:
    """The constant prediction's metrics on the held-out rows, and what it predicts."""
    if schema.task == CLASSIFICATION:
        n = len(schema.classes)
        labels = truth.astype(np.int64)
        shares = np.bincount(labels, minlength=n) / max(len(labels), 1)
        majority = int(np.argmax(shares))
        proba = np.tile(np.clip(shares, 1e-15, 1.0), (len(labels), 1))
        return {"kind": "majority class", "predicts": str(schema.classes[majority]),
                "metrics": classification_metrics(labels, proba)}
    mean = float(np.mean(truth))
    return {"kind": "mean", "predicts": f"{mean:.6g}", "metrics": regression_metrics(truth, np.full(len(truth), mean))}


def importances(folder: Path, evaluation: Evaluation) -> dict[str, list[float] | None]:
    """Gain and split count: a LightGBM model's own, read back from its saved file; else the
    estimator's single importance (as gain) and no split count."""
    model_file = folder / LIGHTGBM_FILE
    if model_file.is_file():
        import lightgbm

        booster = lightgbm.Booster(model_file=str(model_file))
        return {"gain": [float(v) for v in booster.feature_importance(importance_type="gain")],
                "split": [float(v) for v in booster.feature_importance(importance_type="split")]}
    gain = evaluation.importances
    return {"gain": [float(v) for v in gain] if gain is not None else None, "split": None}


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

    truth, raw = evaluation.truth, evaluation.raw
    importance = importances(folder, evaluation)
    if importance["gain"] is not None:
        split = np.asarray(importance["split"]) if importance["split"] is not None else None
        save(report_plots.importance_plot(plt, schema.names, np.asarray(importance["gain"]), split),
             "plot-importance.png", "Feature importance: gain and split count" if split is not None else "Feature importance")
    if schema.task == CLASSIFICATION:
        if len(schema.classes) == 2 and len(np.unique(truth)) == 2:
            save(report_plots.roc_plot(plt, truth, raw[:, 1]), "plot-roc.png", "ROC curve (held-out rows)")
        save(report_plots.confusion_plot(plt, schema, truth, raw), "plot-confusion.png", "Confusion matrix (held-out rows)")
        save(report_plots.calibration_plot(plt, schema, truth, raw), "plot-calibration.png",
             "Calibration (held-out rows; the numbers are rows per bin)")
    else:
        save(report_plots.residual_plot(plt, truth, raw), "plot-residuals.png", "Residuals against predictions (held-out rows)")
    base = baseline(schema, truth)
    (folder / REPORT_DATA).write_text(json.dumps({"baseline": base, "importance": {"features": schema.names, **importance}}, indent=2))
    (folder / REPORT_FILE).write_text(page(schema, metadata, base, plots))
    return [REPORT_FILE, REPORT_DATA] + [name for name, _ in plots]


def delta_cell(metric: str, delta: float) -> str:
    """A signed difference, coloured by whether it is better (green) or worse (red)."""
    better = is_better(metric, delta)
    colour = "#1a7f37" if better else ("#b42318" if delta else "#555")
    return f'<td style="color:{colour}">{delta:+.4f}</td>'


def page(schema: FeatureSchema, metadata: dict[str, Any], base: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    e = html.escape
    metric_rows = "".join(
        f"<tr><td>{e(k)}</td><td>{v:.4f}</td>"
        + (f"<td>{base['metrics'][k]:.4f}</td>{delta_cell(k, v - base['metrics'][k])}" if k in base["metrics"] else "<td></td><td></td>")
        + "</tr>"
        for k, v in metadata["metrics"].items()
    )
    feature_rows = "".join(
        f"<tr><td>{e(f.name)}</td><td>{e(f.kind)}</td><td>{e(f.dtype)}</td>"
        f"<td>{e(', '.join(f.categories[:12]) + (' ...' if len(f.categories) > 12 else ''))}</td></tr>"
        for f in schema.features
    )
    figures = "".join(f'<figure><img src="{e(name)}" alt="{e(title)}"><figcaption>{e(title)}</figcaption></figure>' for name, title in plots)
    rows = metadata.get("rows", {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(metadata['model'])} training report</title><link rel="icon" href="data:,">
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}}
figure{{display:inline-block;margin:1rem}}img{{max-width:100%}}</style></head><body>
<h1>{e(metadata['model'])} — training report</h1>
<p>Run {e(str(metadata['run_id']))}, {e(str(metadata['created']))}. Estimator {e(str(metadata['estimator']['name']))},
task {e(schema.task)}, target <code>{e(schema.target)}</code>.
Rows: {e(str(rows.get('in', '?')))} in, {e(str(metadata['evaluation']))}.</p>
<h2>Held-out metrics</h2>
<p>The baseline is the {e(base['kind'])} of the same held-out rows (it predicts {e(base['predicts'])}).</p>
<table id="metrics"><tr><th>metric</th><th>model</th><th>baseline</th><th>model − baseline</th></tr>{metric_rows}</table>
<h2>Plots</h2>{figures}
<h2>Features</h2><table><tr><th>name</th><th>kind</th><th>dtype</th><th>categories</th></tr>{feature_rows}</table>
</body></html>
"""
