"""Training: estimators, round-trip parity through the store, safe artifacts, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mljobs.errors import ModelError
from mljobs.featurize import Featurizer
from mljobs.jobs import train as train_job
from mljobs.predictor import load_predictor
from mljobs.store import ModelStore, write_manifest
from mljobs.training import TrainSpec, publish, train
from tests.datasets import multiclass_table, regression_table


def publish_and_reload(tmp_path, table, spec):
    trained = train(table, spec)
    store = ModelStore(tmp_path / "models")
    version = publish(store, "m", trained, {"run_id": "test", "created": "now", "source": "test"})
    matrix = Featurizer(trained.schema).transform_table(table).matrix
    return trained, load_predictor(store, f"m:{version}"), matrix


@pytest.mark.parametrize(
    "table, spec, metric",
    [
        (multiclass_table(), TrainSpec("species"), "accuracy"),
        (regression_table(), TrainSpec("price"), "r2"),
        (multiclass_table(), TrainSpec("species", estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 20}), "accuracy"),
        (regression_table(), TrainSpec("price", estimator="sklearn.linear_model.Ridge"), "r2"),
        (multiclass_table(), TrainSpec("species", estimator="sklearn.linear_model.LogisticRegression"), "accuracy"),
    ],
    ids=["lightgbm-multiclass", "lightgbm-regression", "sklearn-forest", "sklearn-ridge", "sklearn-logistic-with-nan"],
)
def test_a_model_loaded_from_the_store_predicts_exactly_what_was_trained(tmp_path, table, spec, metric):
    trained, loaded, matrix = publish_and_reload(tmp_path, table, spec)
    assert trained.metrics[metric] > 0.6
    np.testing.assert_array_equal(loaded.predict_raw(matrix), trained.estimator.predict_raw(matrix))


def test_schema_records_kinds_dtypes_levels_and_classes(tmp_path):
    trained, loaded, _ = publish_and_reload(tmp_path, multiclass_table(), TrainSpec("species"))
    features = {f.name: f for f in loaded.schema.features}
    assert [f.kind for f in loaded.schema.features] == ["numeric", "numeric", "categorical", "numeric"]
    assert features["count"].dtype == "int64"
    assert features["colour"].categories == ("blue", "green", "red")
    assert loaded.schema.classes == ("setosa", "versicolor", "virginica")


def test_cross_validation_reports_fold_metrics_and_trains_on_every_row():
    trained = train(regression_table(), TrainSpec("price", cv=3))
    assert trained.rows == {"in": 600, "train": 600, "valid": 600}
    assert "3-fold" in trained.description and trained.metrics["r2"] > 0.8


def test_report_has_plots_for_each_task(tmp_path):
    publish_and_reload(tmp_path / "c", multiclass_table(), TrainSpec("species"))
    publish_and_reload(tmp_path / "r", regression_table(), TrainSpec("price"))
    classification = tmp_path / "c" / "models" / "m" / "1"
    regression = tmp_path / "r" / "models" / "m" / "1"
    assert {"plot-importance.png", "plot-confusion.png"} <= {p.name for p in classification.iterdir()}
    assert "plot-residuals.png" in {p.name for p in regression.iterdir()}
    page = (classification / "report.html").read_text()
    assert '<img src="plot-confusion.png"' in page and "accuracy" in page


def tamper_and_reseal(folder, change):
    """An attacker who can write the volume can also rewrite the MANIFEST: what stops them then."""
    change(folder)
    (folder / "MANIFEST").unlink()
    write_manifest(folder)


def test_skops_file_with_an_untrusted_type_is_refused(tmp_path):
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    publish_and_reload(tmp_path, regression_table(), TrainSpec("price", estimator="sklearn.linear_model.Ridge"))
    folder = tmp_path / "models" / "m" / "1"
    tamper_and_reseal(folder, lambda f: skops.io.dump(FunctionTransformer(func=os.system), f / "model.skops"))
    with pytest.raises(ModelError, match="untrusted type"):
        load_predictor(ModelStore(tmp_path / "models"), "m")


def test_a_model_saved_by_another_lightgbm_major_version_is_refused(tmp_path):
    publish_and_reload(tmp_path, regression_table(), TrainSpec("price"))
    folder = tmp_path / "models" / "m" / "1"

    def older_lightgbm(f):
        meta = json.loads((f / "metadata.json").read_text())
        meta["libraries"]["lightgbm"] = "3.3.5"
        (f / "metadata.json").write_text(json.dumps(meta))

    tamper_and_reseal(folder, older_lightgbm)
    with pytest.raises(ModelError, match="saved with lightgbm 3.3.5"):
        load_predictor(ModelStore(tmp_path / "models"), "m")


def test_a_truncated_model_file_is_refused(tmp_path):
    publish_and_reload(tmp_path, regression_table(), TrainSpec("price"))
    model_file = tmp_path / "models" / "m" / "1" / "model.lgb.txt"
    model_file.write_bytes(model_file.read_bytes()[:200])
    with pytest.raises(ModelError, match="does not match its MANIFEST"):
        load_predictor(ModelStore(tmp_path / "models"), "m")


def write(table: pa.Table, path):
    (pq.write_table if path.suffix == ".parquet" else pacsv.write_csv)(table, path)
    return path


def text(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


BAD_INPUTS = [
    ("missing-target", lambda d: write(regression_table(), d / "x.csv"), ["--target", "nope"], 3, "target column 'nope' is not in the data"),
    ("empty-file", lambda d: text(d / "x.csv", ""), [], 3, "cannot read x.csv: Empty CSV file"),
    ("header-only", lambda d: text(d / "x.csv", "size,price\n"), [], 3, "has no rows"),
    ("one-class", lambda d: write(pa.table({"a": [1.0, 2.0, 3.0], "price": ["x", "x", "x"]}), d / "x.csv"), [], 3,
     "target column 'price' has 1 class(es); classification needs at least 2"),
    ("all-empty-column", lambda d: text(d / "x.csv", "a,b,price\n1,,1.5\n2,,2.5\n3,,3.5\n"), [], 3,
     "column 'b' is empty in every row"),
    ("text-in-numeric", lambda d: write(pa.table({"a": [str(i) for i in range(30)] + ["12,5"], "price": [float(i) for i in range(31)]}), d / "x.csv"),
     [], 3, "column 'a' holds numbers except in row 30: '12,5' is not a number"),
    ("unknown-estimator", lambda d: write(regression_table(), d / "x.csv"), ["--estimator", "sklearn.nope.Model"], 2,
     "--estimator sklearn.nope.Model: no such scikit-learn class"),
    ("not-sklearn", lambda d: write(regression_table(), d / "x.csv"), ["--estimator", "os.system"], 2, "use 'lightgbm' or a scikit-learn class path"),
    ("unreadable-parquet", lambda d: text(d / "x.parquet", b"PAR1 not really"), [], 3, "cannot read x.parquet"),
    ("wrong-task", lambda d: write(regression_table(), d / "x.csv"), ["--estimator", "sklearn.ensemble.RandomForestClassifier"], 2,
     "is not a regressor"),
]


@pytest.mark.parametrize("make, flags, code, reason", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_reason_and_publishes_nothing(tmp_path, capsys, make, flags, code, reason):
    path = make(tmp_path)
    argv = ["--input", str(path), "--target", "price", "--model", "m", *flags]
    assert train_job.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs"), *argv]) == code
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert reason in last_line
    assert not (tmp_path / "models" / "m").exists() or ModelStore(tmp_path / "models").versions("m") == []
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    assert record["status"] == "failed" and reason in record["reason"]


def test_input_may_be_a_folder_of_parts_or_a_glob(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    table = regression_table()
    write(table.slice(0, 300), parts / "a.parquet")
    write(table.slice(300), parts / "b.parquet")
    for spec in (str(parts), str(parts / "*.parquet")):
        assert train_job.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs"),
                               "--input", spec, "--target", "price", "--model", "m"]) == 0
    meta = json.loads((tmp_path / "models" / "m" / "2" / "metadata.json").read_text())
    assert meta["rows"]["in"] == 600 and len(meta["data_fingerprint"]) == 64


def test_settings_precedence_flag_over_config_file_over_environment(tmp_path, monkeypatch):
    data = write(regression_table(), tmp_path / "x.csv")
    params = tmp_path / "params.yaml"
    params.write_text("num_leaves: 7\nnum_boost_round: 15\n")
    config = tmp_path / "train.yaml"
    config.write_text(f"input: {data}\ntarget: price\nmodel: from-file\nparams: {params}\nseed: 3\nfeatures: [size, rooms]\n")
    monkeypatch.setenv("MLJOBS_MODEL", "from-env")
    monkeypatch.setenv("MLJOBS_SEED", "9")
    monkeypatch.setenv("MLJOBS_PROMOTE", "production")
    argv = ["--models-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs"), "--config", str(config), "--seed", "4"]
    assert train_job.main(argv) == 0
    store = ModelStore(tmp_path / "models")
    assert store.names() == ["from-file"] and store.aliases("from-file") == {"latest": "1", "production": "1"}
    meta = json.loads((tmp_path / "models" / "from-file" / "1" / "metadata.json").read_text())
    assert meta["estimator"]["params"]["seed"] == 4
    assert meta["estimator"]["params"]["num_leaves"] == 7 and meta["estimator"]["params"]["num_boost_round"] == 15
    schema = json.loads((tmp_path / "models" / "from-file" / "1" / "schema.json").read_text())
    assert [f["name"] for f in schema["features"]] == ["size", "rooms"]
