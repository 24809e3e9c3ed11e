"""hyperparameters.json (a flat object of strings) as the train job's command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UsageError

DEFAULT_MODEL = "model"
# hyperparameter -> the train job's flag; "-" and "_" are the same in names.
FLAGS = {
    "target": "--target", "model": "--model", "task": "--task", "estimator": "--estimator",
    "params": "--params", "features": "--features", "drop": "--drop",
    "valid_fraction": "--valid-fraction", "cv": "--cv", "seed": "--seed",
}
# Added by SageMaker itself (frameworks, tuning jobs), not by the user: not ours to refuse.
SAGEMAKER_OWN = ("sagemaker_", "_tuning_objective_metric")


def read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object of hyperparameters")
    return data


def text_of(value: Any) -> str:
    """SageMaker sends strings; framework estimators JSON-encode them once more ('"churned"')."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                decoded = json.loads(value)
            except ValueError:
                return value
            return decoded if isinstance(decoded, str) else value
        return value
    return json.dumps(value)


def train_arguments(hyperparameters: dict[str, Any]) -> list[str]:
    """The train job's flags for these hyperparameters; an unknown one is a usage error."""
    settings = {str(k).replace("-", "_"): text_of(v) for k, v in hyperparameters.items()
                if not str(k).startswith(SAGEMAKER_OWN)}
    unknown = sorted(set(settings) - set(FLAGS))
    if unknown:
        raise UsageError(f"unknown hyperparameter(s) {', '.join(unknown)}: use {', '.join(FLAGS)}")
    if not settings.get("target"):
        raise UsageError("the hyperparameter 'target' is required: name the column to predict")
    settings.setdefault("model", DEFAULT_MODEL)
    arguments: list[str] = []
    for name, value in settings.items():
        arguments += [FLAGS[name], value]
    return arguments
