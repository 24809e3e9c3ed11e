"""Any scikit-learn estimator, by import path, saved with skops (no pickle) and loaded only
when every type in the file is on an explicit allow-list."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, UsageError
from ..schema import CLASSIFICATION, FeatureSchema
from ..manifest import VerifiedVersion

SKOPS_FILE = "model.skops"
# Types a model file may contain beyond what skops trusts by default: scikit-learn's own, and
# numpy dtypes (SimpleImputer keeps one).
TRUSTED_PREFIXES = ("sklearn.",)
TRUSTED_TYPES = frozenset({"numpy.dtype"})


class SklearnEstimator:
    kind = "sklearn"
    libraries: tuple[str, ...] = ("scikit-learn", "skops")

    def __init__(self, model: Any, classifier: bool):
        self.model = model
        self.classifier = classifier

    def predict_raw(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        if self.classifier:
            return np.asarray(self.model.predict_proba(matrix), dtype=np.float64)
        return np.asarray(self.model.predict(matrix), dtype=np.float64)

    def save(self, folder: Path) -> list[str]:
        return save_skops_model(self.model, folder)

    def importances(self) -> np.ndarray | None:
        final = self.model.steps[-1][1] if hasattr(self.model, "steps") else self.model
        if hasattr(final, "feature_importances_"):
            return np.asarray(final.feature_importances_, dtype=np.float64)
        if hasattr(final, "coef_"):
            return np.asarray(np.abs(np.atleast_2d(final.coef_)).sum(axis=0), dtype=np.float64)
        return None

    @classmethod
    def load(cls, verified: VerifiedVersion, schema: FeatureSchema) -> SklearnEstimator:
        return cls(load_skops_model(verified), schema.task == CLASSIFICATION)


class UntrustedTypeError(ModelError):
    """A skops file holding a type outside the allow-list."""


def load_skops_model(verified: VerifiedVersion, also_trusted: frozenset[str] = frozenset()) -> Any:
    """The version's skops file, loaded only if every type in it is on the allow-list (plus
    `also_trusted`: what an import let in with --trust-pickle, as its version records)."""
    data = verified.files.get(SKOPS_FILE)
    if data is None:
        raise ModelError(f"model {verified.label} is refused: it has no {SKOPS_FILE}")
    try:
        return load_skops_bytes(data, also_trusted)
    except ModelError as exc:
        raise ModelError(f"model {verified.label} is refused: {exc}") from exc


def load_skops_bytes(data: bytes, also_trusted: frozenset[str] = frozenset(), trust_any: bool = False) -> Any:
    """Bytes skops wrote, loaded only if every type in them is on the allow-list (plus
    `also_trusted`; `trust_any` takes every type): else a ModelError saying what is wrong."""
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises assorted errors on a damaged file
        raise ModelError(f"skops cannot read it ({exc})") from exc
    refused = outside_allow_list(untrusted, also_trusted)
    if refused and not trust_any:
        raise UntrustedTypeError(f"it contains the untrusted type {refused[0]}, which is outside the allow-list "
                                 "(scikit-learn, numpy, scipy types)")
    try:
        return skops.io.loads(data, trusted=untrusted)
    except Exception as exc:
        raise ModelError(f"skops cannot load it ({exc})") from exc


def outside_allow_list(types: list[str], also_trusted: frozenset[str] = frozenset()) -> list[str]:
    """The types skops does not trust by itself that our allow-list does not take either."""
    return [t for t in types if not (t in TRUSTED_TYPES or t in also_trusted or defined_in_sklearn(t))]


def defined_in_sklearn(name: str) -> bool:
    """A class scikit-learn defines under that name: not one of the names its modules re-export
    from elsewhere (operator.itemgetter as sklearn.feature_extraction.text.itemgetter, say)."""
    if not name.startswith(TRUSTED_PREFIXES):
        return False
    module, _, attribute = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type) and f"{found.__module__}.{found.__qualname__}" == name


def save_skops_model(model: Any, folder: Path) -> list[str]:
    import skops.io

    skops.io.dump(model, folder / SKOPS_FILE)
    return [SKOPS_FILE]


def estimator_class(path: str) -> type:
    """The scikit-learn estimator class an import path names, or a UsageError saying why not."""
    module_name, _, class_name = path.rpartition(".")
    if not module_name.startswith("sklearn.") or not class_name:
        raise UsageError(f"--estimator {path}: use 'lightgbm' or a scikit-learn class path like sklearn.ensemble.RandomForestClassifier")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise UsageError(f"--estimator {path}: no such scikit-learn class") from None
    from sklearn.base import BaseEstimator

    if not (inspect.isclass(cls) and issubclass(cls, BaseEstimator)):
        raise UsageError(f"--estimator {path} is not a scikit-learn estimator")
    return cls


def fit_sklearn(
    path: str, schema: FeatureSchema, matrix: np.ndarray, labels: np.ndarray, params: dict[str, Any], seed: int
) -> tuple[SklearnEstimator, dict[str, Any]]:
    from sklearn.base import is_classifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.utils import get_tags

    cls = estimator_class(path)
    if "random_state" in inspect.signature(cls).parameters:
        params = {"random_state": seed, **params}
    try:
        model = cls(**params)
    except TypeError as exc:
        raise UsageError(f"--params does not fit {path}: {exc}") from exc
    classifier = schema.task == CLASSIFICATION
    if is_classifier(model) != classifier:
        raise UsageError(f"--estimator {path} is not a {'classifier' if classifier else 'regressor'}, and the task is {schema.task}")
    if classifier and not hasattr(model, "predict_proba"):
        raise UsageError(f"--estimator {path} gives no class probabilities (predict_proba)")
    if not get_tags(model).input_tags.allow_nan:
        # This estimator cannot take missing values: fill them as training saw them.
        model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), model)
    try:
        model.fit(matrix, labels.astype(np.int64) if classifier else labels)
    except ValueError as exc:
        raise UsageError(f"{path} failed to train: {exc}") from exc
    return SklearnEstimator(model, classifier), {"estimator": path, **params}
