"""Estimators behind one small interface: fit on the featurized matrix, save as safe files, load,
predict. The store records which kind wrote a model and which libraries its files depend on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ..schema import FeatureSchema
from ..manifest import VerifiedVersion
from .lightgbm_import import leave_out_integrations
from .lightgbm_model import LightGBMEstimator, fit_lightgbm
from .native_lightgbm import load_native
from .sklearn_model import SklearnEstimator, fit_sklearn
from .sklearn_frame import SklearnFrameEstimator, load_sklearn_frame


class Estimator(Protocol):
    kind: str
    libraries: tuple[str, ...]

    def predict_raw(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        """Class probabilities (rows x classes) for classifiers, values (rows,) for regressors."""

    def save(self, folder: Path) -> list[str]:
        """Write the model's files into `folder`; return their names."""

    def importances(self) -> np.ndarray | None:
        """One importance per feature, if the estimator has them."""


def load_lightgbm(verified: VerifiedVersion, schema: FeatureSchema) -> Estimator:
    """A signed version's compiled predictor when it has a usable one, else its text model."""
    leave_out_integrations()  # a predict job's start-up: neither scikit-learn nor pandas
    native = load_native(verified, len(schema.classes)) if verified.signed else None
    return native or LightGBMEstimator.load(verified, schema)


def load_sklearn(verified: VerifiedVersion, schema: FeatureSchema) -> Estimator:
    return SklearnEstimator.load(verified, schema)


# Each kind's loader, given a version whose bytes were checked against its MANIFEST (and signature).
LOADERS: dict[str, Callable[[VerifiedVersion, FeatureSchema], Estimator]] = {
    LightGBMEstimator.kind: load_lightgbm,
    SklearnEstimator.kind: load_sklearn,
    SklearnFrameEstimator.kind: load_sklearn_frame,
}


def fit_estimator(
    spec: str, schema: FeatureSchema, matrix: np.ndarray, labels: np.ndarray, params: dict[str, Any], seed: int
) -> tuple[Estimator, dict[str, Any]]:
    """Train the estimator `spec` names ('lightgbm' or a scikit-learn class path)."""
    if spec == "lightgbm":
        return fit_lightgbm(schema, matrix, labels, params, seed)
    return fit_sklearn(spec, schema, matrix, labels, params, seed)
