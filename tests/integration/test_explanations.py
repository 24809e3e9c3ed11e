"""Explanations from the predict image: `predict --explain` in a real container writes SHAP
columns whose contributions plus base value give the raw score, for binary, multiclass and
regression LightGBM models; ml_predict in the sql image equals the batch job's predictions."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mljobs import demo
from mljobs.predictor import load_predictor
from mljobs.store import ModelStore
from tests.datasets import multiclass_table, regression_table

pytestmark = pytest.mark.integration

TASKS = {
    "churn": (demo.training_table(rows=2000, seed=3).drop_columns(["customer_id"]), demo.TARGET),
    "species": (multiclass_table(), "species"),
    "price": (regression_table(), "price"),
}


def test_predict_explain_in_a_container_adds_up_to_the_raw_score(compose, tmp_path):
    inputs = compose.data_dir / "input"
    for name, (table, target) in TASKS.items():
        pq.write_table(table, inputs / f"{name}-train.parquet")
        pq.write_table(table.drop_columns([target]).slice(0, 300), inputs / f"{name}-new.parquet")
        trained = compose.run("train", "--input", f"/data/input/{name}-train.parquet", "--target", target, "--model", name,
                              "--params", json.dumps({"num_boost_round": 40}))
        assert trained.returncode == 0, trained.stderr[-3000:]
        scored = compose.run("predict", "--model", name, "--input", f"/data/input/{name}-new.parquet", "--explain")
        assert scored.returncode == 0, scored.stderr[-3000:]
        [part] = (compose.data_dir / "output").glob(f"model={name}/date=*/run=*/predictions.parquet")
        rows = pq.read_table(part).to_pylist()

        predictor = load_predictor(ModelStore(compose.copy_store(name, tmp_path / name)), name)
        new = pq.read_table(inputs / f"{name}-new.parquet")
        margin = predictor.raw_margin(predictor.featurizer.transform_table(new).matrix)
        assert len(rows) == 300
        for row, raw in zip(rows, margin):
            attributions = row["top_feature_attributions"]
            assert {a["feature"] for a in attributions} == set(predictor.schema.names)
            total = row["baseline_prediction_value"] + sum(a["attribution"] for a in attributions)
            assert abs(total - row["prediction_value"]) < 1e-6
            explained = raw.max() if len(raw) > 1 else raw[0]
            if len(predictor.schema.classes) == 2 and row["prediction"] == predictor.schema.classes[0]:
                explained = -raw[0]  # class 0's margin
            assert abs(row["prediction_value"] - explained) < 1e-6

    sql = compose.run("sql", "SELECT * FROM ml_predict('churn', TABLE '/data/input/churn-new.parquet')")
    assert sql.returncode == 0, sql.stderr[-3000:]
    [result] = (compose.data_dir / "output").glob("job=sql/date=*/run=*/result.parquet")
    [batch] = (compose.data_dir / "output").glob("model=churn/date=*/run=*/predictions.parquet")
    assert pq.read_table(result).column("predicted_churned").equals(pq.read_table(batch).column("prediction"))
    assert pa.types.is_list(pq.read_table(result).schema.field("predicted_churned_probs").type)
