"""Explanations: SHAP contributions plus the base value add up to the raw score for binary,
multiclass and regression LightGBM models (text and compiled predictor alike), BigQuery ML's
row shape, global importance, and a clear refusal for estimators without contributions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mljobs import demo
from mljobs.explain import ExplainUnavailable
from mljobs.featurize import Featurizer
from mljobs.predictor import Predictor, load_predictor
from mljobs.estimators.native_lightgbm import NativeLightGBMEstimator
from mljobs.store import ModelStore
from mljobs.training import TrainSpec, publish, train
from tests.datasets import multiclass_table, regression_table

FAST = {"num_boost_round": 40}
CASES = {
    "binary": (demo.training_table(rows=1500), TrainSpec(demo.TARGET, params=FAST)),
    "multiclass": (multiclass_table(), TrainSpec("species", params=FAST)),
    "regression": (regression_table(), TrainSpec("price", params=FAST)),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Predictor, np.ndarray]]:
    """Each task's model loaded back from a store, with its training rows as a matrix; and the
    binary model from a signed store, so it loads as the compiled predictor."""
    root = tmp_path_factory.mktemp("explain")
    out: dict[str, tuple[Predictor, np.ndarray]] = {}
    for name, (table, spec) in CASES.items():
        trained = train(table, spec)
        store = ModelStore(root / "plain")
        version = publish(store, name, trained, {"run_id": "t", "created": "now", "source": "test"})
        out[name] = (load_predictor(store, f"{name}:{version}"), Featurizer(trained.schema).transform_table(table).matrix[:400])
        if name == "binary":
            signed = ModelStore(root / "signed", key=b"k" * 32)
            publish(signed, name, trained, {"run_id": "t", "created": "now", "source": "test"})
            out["binary-compiled"] = (load_predictor(signed, name), out[name][1])
    return out


@pytest.mark.parametrize("case, outputs", [("binary", 1), ("binary-compiled", 1), ("multiclass", 3), ("regression", 1)])
def test_contributions_plus_base_value_sum_to_the_raw_score(models, case, outputs):
    predictor, matrix = models[case]
    values = predictor.contributions(matrix)
    assert values.shape == (len(matrix), outputs, len(predictor.schema.names) + 1)
    margin = predictor.raw_margin(matrix)
    assert np.max(np.abs(values.sum(axis=2) - margin)) < 1e-6
    # The margin is the score the model serves, before its link function.
    served = predictor.predict_raw(matrix)
    if case.startswith("binary"):
        np.testing.assert_allclose(1 / (1 + np.exp(-margin[:, 0])), served[:, 1], atol=1e-9)
    elif case == "multiclass":
        soft = np.exp(margin) / np.exp(margin).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(soft, served, atol=1e-9)
    else:
        np.testing.assert_allclose(margin[:, 0], served, atol=1e-9)


def test_the_compiled_predictor_explains_from_its_text_model(models):
    compiled, matrix = models["binary-compiled"]
    assert isinstance(compiled.estimator, NativeLightGBMEstimator)
    np.testing.assert_allclose(compiled.contributions(matrix), models["binary"][0].contributions(matrix), atol=1e-12)


@pytest.mark.parametrize("case", ["binary", "multiclass", "regression"])
def test_explain_has_bigquery_mls_shape_for_the_predicted_class(models, case):
    predictor, matrix = models[case]
    rows = predictor.explain(matrix, top_k=3)
    full = predictor.explain(matrix)
    margin = predictor.raw_margin(matrix)
    labels = predictor.labels(predictor.predict_raw(matrix)) if predictor.is_classifier else None
    assert len(rows) == len(matrix)
    for i, (row, whole) in enumerate(zip(rows, full)):
        assert set(row) == {"top_feature_attributions", "baseline_prediction_value", "prediction_value", "approximation_error"}
        attributions = [a["attribution"] for a in row["top_feature_attributions"]]
        assert len(attributions) == 3 and attributions == sorted(attributions, key=abs, reverse=True)
        assert {a["feature"] for a in whole["top_feature_attributions"]} == set(predictor.schema.names)
        total = whole["baseline_prediction_value"] + sum(a["attribution"] for a in whole["top_feature_attributions"])
        assert abs(total - whole["prediction_value"]) < 1e-6 and row["approximation_error"] < 1e-6
        if case == "multiclass":  # the predicted class's margin
            assert row["prediction_value"] == pytest.approx(margin[i].max(), abs=1e-9)
        elif case == "binary":  # class 0's margin is minus class 1's
            sign = 1 if labels and labels[i] == predictor.schema.classes[1] else -1
            assert row["prediction_value"] == pytest.approx(sign * margin[i, 0], abs=1e-9)
        else:
            assert row["prediction_value"] == pytest.approx(margin[i, 0], abs=1e-9)


def test_feature_importance_per_feature(models):
    predictor, _ = models["multiclass"]
    importance = predictor.feature_importance()
    assert [r["feature"] for r in importance] == predictor.schema.names
    assert all(isinstance(r["importance_weight"], int) and r["importance_gain"] >= 0 for r in importance)
    assert sum(r["importance_weight"] for r in importance) > 0
    assert models["binary-compiled"][0].feature_importance() == models["binary"][0].feature_importance()


def test_an_estimator_without_contributions_is_refused_with_its_name(tmp_path: Path):
    table = multiclass_table()
    trained = train(table, TrainSpec("species", estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 5}))
    store = ModelStore(tmp_path / "models")
    publish(store, "forest", trained, {"run_id": "t", "created": "now", "source": "test"})
    predictor = load_predictor(store, "forest")
    matrix = Featurizer(trained.schema).transform_table(table).matrix[:10]
    with pytest.raises(ExplainUnavailable, match="explanations are not available for estimator sklearn.ensemble.RandomForestClassifier") as raised:
        predictor.explain(matrix)
    assert raised.value.exit_code == 2
    importance = predictor.feature_importance()
    assert sum(r["importance_weight"] for r in importance) > 0 and all(r["importance_gain"] is not None for r in importance)


def test_predict_explain_with_an_estimator_without_contributions_exits_2(tmp_path: Path, capsys):
    from mljobs.jobs import predict
    import pyarrow.parquet as pq

    table = multiclass_table()
    trained = train(table, TrainSpec("species", estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 5}))
    publish(ModelStore(tmp_path / "models"), "forest", trained, {"run_id": "t", "created": "now", "source": "test"})
    pq.write_table(table.drop_columns(["species"]), tmp_path / "new.parquet")
    argv = ["--models-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "out"),
            "--model", "forest", "--input", str(tmp_path / "new.parquet")]
    assert predict.main([*argv, "--explain"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].endswith("explanations are not available for estimator sklearn.ensemble.RandomForestClassifier")
    assert "Traceback" not in err and not list((tmp_path / "out").glob("model=*/date=*/run=*"))
    assert predict.main([*argv, "--top-k", "3"]) == 2  # --top-k goes with --explain
    assert "--top-k must be a whole number of at least 1, and goes with --explain" in capsys.readouterr().err


def test_models_show_prints_global_importance(models, tmp_path: Path, capsys):
    from mljobs.jobs import models as models_job

    table, spec = CASES["regression"]
    publish(ModelStore(tmp_path / "models"), "price", train(table, spec), {"run_id": "t", "created": "now", "source": "test"})
    assert models_job.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs"), "show", "price", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["feature_importance"]
    assert {r["feature"] for r in shown} == {"size", "rooms", "district", "garden"}
    assert [r["importance_gain"] for r in shown] == sorted((r["importance_gain"] for r in shown), reverse=True)
    assert models_job.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs"), "show", "price"]) == 0
    assert "importance  feature" in capsys.readouterr().out


def test_a_bad_top_k_from_the_environment_is_a_usage_error(models, tmp_path: Path, monkeypatch, capsys):
    from mljobs.jobs import predict

    monkeypatch.setenv("MLJOBS_TOP_K", "three")
    assert predict.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs"),
                         "--output", str(tmp_path / "out"), "--explain"]) == 2
    assert "--top-k must be a whole number of at least 1" in capsys.readouterr().err
