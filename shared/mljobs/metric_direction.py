"""Which metric speaks for a model, and which way is better (stdlib only: the server's pages use it)."""

from __future__ import annotations

from typing import Mapping

LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


def main_metric(task: str | None, metrics: Mapping[str, float]) -> str | None:
    """rmse for regressors; roc_auc, else accuracy, for classifiers (as promote-if-better)."""
    for name in (("rmse",) if task == "regression" else ("roc_auc", "accuracy")):
        if name in metrics:
            return name
    return next(iter(metrics), None)


def is_better(metric: str, delta: float) -> bool:
    return delta < 0 if metric in LOWER_IS_BETTER else delta > 0
