"""The train and predict jobs run in-process: outputs, exit codes and run records."""

import json
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mljobs import demo
from mljobs.jobs import predict, train
from mljobs.predictor import load_predictor
from mljobs.store import ModelStore


def run_predict(store: Path, out: Path, *flags: str) -> int:
    return predict.main(["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs"), "--output", str(out), *flags])


def records(store: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((store / "runs").glob("*.json"))]


def test_train_publishes_a_complete_version(demo_store):
    folder = demo_store / "models" / "demo" / "1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "MANIFEST", "metadata.json", "model.lgb.txt", "plot-calibration.png", "plot-confusion.png", "plot-importance.png", "plot-roc.png",
        "report.html", "report.json", "schema.json",
    ]
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["metrics"]["roc_auc"] > 0.6
    schema = json.loads((folder / "schema.json").read_text())
    assert [f["name"] for f in schema["features"]] == ["age", "tenure_months", "monthly_charges", "plan", "region", "has_support"]
    assert schema["classes"] == ["no", "yes"]


def test_predict_writes_one_row_per_input_row_matching_in_process(demo_store, tmp_path):
    rows = demo.scoring_table(rows=300, seed=3)
    pacsv.write_csv(rows, tmp_path / "new.csv")
    out = tmp_path / "out"
    out.mkdir()
    assert run_predict(demo_store, out, "--input", str(tmp_path / "new.csv"), "--keep-columns", "customer_id", "--proba", "--chunk-rows", "64") == 0
    [part] = out.glob("model=demo/date=*/run=*/predictions.parquet")
    assert (part.parent / "_SUCCESS").exists()
    result = pq.read_table(part)
    assert result.column("customer_id").to_pylist() == rows.column("customer_id").to_pylist()
    predictor = load_predictor(ModelStore(demo_store / "models"), "demo")
    expected = predictor.predict_raw(predictor.featurizer.transform_table(rows).matrix)
    assert result.column("proba_yes").to_pylist() == expected[:, 1].tolist()


def test_unknown_model_exits_4(demo_store, tmp_path, capsys):
    assert run_predict(demo_store, tmp_path, "--model", "nope") == 4
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"predict failed: model 'nope' does not exist in {demo_store / 'models'} (models: demo)"
    )


@pytest.mark.parametrize(
    "flags, code, reason",
    [
        (["--input", "missing.csv", "--target", "y", "--model", "m"], 3, "does not exist"),
        (["--input", "{data}", "--target", "nope", "--model", "m"], 3, "target column 'nope' is not in the data"),
        (["--input", "{data}", "--model", "m"], 2, "--target is required"),
    ],
    ids=["missing-file", "missing-target", "no-target-flag"],
)
def test_train_errors_use_the_contract(tmp_path, capsys, flags, code, reason):
    data = tmp_path / "train.csv"
    pacsv.write_csv(demo.training_table(rows=50), data)
    flags = [f.replace("{data}", str(data)) for f in flags]
    assert train.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs"), *flags]) == code
    assert reason in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "models" / "m").exists()
