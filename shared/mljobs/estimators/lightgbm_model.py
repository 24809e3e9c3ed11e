"""LightGBM, the default estimator, saved in LightGBM's own text format (no pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..cpus import affinity_cpus, usable_cpus
from ..errors import ModelError, UsageError
from ..schema import CATEGORICAL, CLASSIFICATION, FeatureSchema
from ..manifest import VerifiedVersion

LIGHTGBM_FILE = "model.lgb.txt"
# LightGBM's names for its thread count: a user's choice among them wins over ours.
THREAD_ALIASES = {"num_threads", "num_thread", "nthread", "nthreads", "n_jobs"}
DEFAULT_LIGHTGBM_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "num_boost_round": 200,
    "verbose": -1,
}


def class_columns(out: np.ndarray, n_classes: int) -> np.ndarray:
    """LightGBM gives P(class 1) alone for a binary model: make it one column per class."""
    return np.column_stack([1.0 - out, out]) if n_classes == 2 else out


class LightGBMEstimator:
    kind = "lightgbm"
    libraries: tuple[str, ...] = ("lightgbm",)

    def __init__(self, booster: Any, n_classes: int):
        self.booster = booster
        self.n_classes = n_classes

    def predict_raw(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        return class_columns(self.booster.predict(matrix, num_threads=threads or usable_cpus()), self.n_classes)

    def text_booster(self) -> Any:
        """The booster itself: it computes contributions (pred_contrib) and raw scores."""
        return self.booster

    def save(self, folder: Path) -> list[str]:
        self.booster.save_model(str(folder / LIGHTGBM_FILE))
        return [LIGHTGBM_FILE]

    def importances(self) -> np.ndarray:
        return np.asarray(self.booster.feature_importance(importance_type="gain"), dtype=np.float64)

    @classmethod
    def load(cls, verified: VerifiedVersion, schema: FeatureSchema) -> LightGBMEstimator:
        import lightgbm

        try:
            booster = lightgbm.Booster(model_str=verified.text(LIGHTGBM_FILE))
        except (lightgbm.basic.LightGBMError, KeyError, UnicodeDecodeError) as exc:
            raise ModelError(f"model {verified.label} is refused: LightGBM cannot read it ({exc})") from exc
        if booster.num_feature() != len(schema.features):
            raise ModelError(
                f"model {verified.label} is refused: it has {booster.num_feature()} features, its schema {len(schema.features)}"
            )
        return cls(booster, len(schema.classes))


def lightgbm_objective(schema: FeatureSchema) -> dict[str, Any]:
    if schema.task != CLASSIFICATION:
        return {"objective": "regression"}
    if len(schema.classes) == 2:
        return {"objective": "binary"}
    return {"objective": "multiclass", "num_class": len(schema.classes)}


def fit_lightgbm(
    schema: FeatureSchema,
    matrix: np.ndarray,
    labels: np.ndarray,
    params: dict[str, Any],
    seed: int,
) -> tuple[LightGBMEstimator, dict[str, Any]]:
    """Train a booster; returns it and the full parameter set used."""
    import lightgbm

    merged = {**DEFAULT_LIGHTGBM_PARAMS, **lightgbm_objective(schema), **params, "seed": seed}
    rounds = int(merged.pop("num_boost_round"))
    categorical = [i for i, f in enumerate(schema.features) if f.kind == CATEGORICAL]
    dataset = lightgbm.Dataset(
        matrix, label=labels, feature_name=schema.names, categorical_feature=categorical, free_raw_data=True
    )
    # OpenMP's default is every CPU the process may run on, a CPU limit notwithstanding; named
    # only under a limit, so the model file is the same as ever elsewhere.
    limited = usable_cpus() < affinity_cpus() and not THREAD_ALIASES & merged.keys()
    threads = {"num_threads": usable_cpus()} if limited else {}
    try:
        booster = lightgbm.train({**merged, **threads}, dataset, num_boost_round=rounds)
    except lightgbm.basic.LightGBMError as exc:
        raise UsageError(f"LightGBM refused the parameters: {exc}") from exc
    return LightGBMEstimator(booster, len(schema.classes)), {**merged, "num_boost_round": rounds}

