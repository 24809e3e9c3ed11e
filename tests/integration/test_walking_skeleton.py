"""The whole path with real containers: compose train, compose predict, compose serve."""

from __future__ import annotations

import json

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests

from mljobs import demo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(compose):
    result = compose.run("train")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def new_rows(compose):
    table = demo.scoring_table(rows=400, seed=11)
    pacsv.write_csv(table, compose.data_dir / "input" / "new.csv")
    return table


def output_parts(compose):
    return sorted((compose.data_dir / "output").glob("model=demo/date=*/run=*/predictions.parquet"))


def test_train_publishes_a_version_on_the_models_volume(compose, trained):
    assert "published demo:1" in trained.stderr
    assert "roc_auc" in trained.stdout
    listing = compose("run", "--rm", "-T", "--entrypoint", "ls", "predict", "/models/demo", "/models/demo/1")
    assert listing.returncode == 0, listing.stderr
    assert "MANIFEST" in listing.stdout.split() and "model.lgb.txt" in listing.stdout.split()


def test_predict_writes_exactly_one_prediction_per_input_row(compose, trained, new_rows):
    before = set(output_parts(compose))
    result = compose.run("predict", "--input", "/data/input/new.csv", "--keep-columns", "customer_id", "--proba")
    assert result.returncode == 0, result.stderr[-3000:]
    [part] = set(output_parts(compose)) - before
    assert (part.parent / "_SUCCESS").exists()
    predictions = pq.read_table(part)
    assert predictions.num_rows == new_rows.num_rows
    assert predictions.column("customer_id").to_pylist() == new_rows.column("customer_id").to_pylist()


def test_predict_with_no_arguments_scores_the_demo_rows(compose, trained):
    before = set(output_parts(compose))
    result = compose.run("predict")
    assert result.returncode == 0, result.stderr[-3000:]
    [part] = set(output_parts(compose)) - before
    assert pq.read_table(part).num_rows == demo.scoring_table().num_rows


def test_bad_input_exits_3_with_its_reason_and_writes_nothing(compose, trained):
    (compose.data_dir / "input" / "bad.csv").write_text("age,plan\n30,basic\n")
    before = sorted((compose.data_dir / "output").rglob("*"))
    result = compose.run("predict", "--input", "/data/input/bad.csv")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1].startswith("predict failed: column 'tenure_months': column missing")
    assert sorted((compose.data_dir / "output").rglob("*")) == before


def test_served_prediction_equals_the_batch_prediction(compose, trained, new_rows):
    scored = compose.run("predict", "--input", "/data/input/new.csv", "--keep-columns", "customer_id", "--proba")
    assert scored.returncode == 0, scored.stderr[-3000:]  # scored already above: the same output
    [part] = [p for p in output_parts(compose) if "customer_id" in pq.read_schema(p).names]
    batch = pq.read_table(part).to_pylist()
    up = compose("up", "-d", "serve")
    assert up.returncode == 0, up.stderr[-3000:]
    compose.wait_ready()

    one = requests.post(compose.url("/predict"), json=new_rows.slice(7, 1).to_pylist()[0], timeout=10)
    assert one.status_code == 200
    [served] = one.json()["predictions"]
    assert served["prediction"] == batch[7]["prediction"]
    assert served["probabilities"] == {"no": batch[7]["proba_no"], "yes": batch[7]["proba_yes"]}

    every = requests.post(compose.url("/predict"), data=json.dumps(new_rows.to_pylist()),
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert every.status_code == 200
    assert [p["probabilities"]["yes"] for p in every.json()["predictions"]] == [r["proba_yes"] for r in batch]
    assert one.json()["model"] == {"name": "demo", "version": "1"}


def test_a_restarted_server_answers_on_the_same_port(compose, trained):
    """MLJOBS_PORT alone sets the port, and it stays there: Docker does not pick another on restart."""
    for _ in range(3):
        assert compose("stop", "serve").returncode == 0
        up = compose("up", "-d", "serve")
        assert up.returncode == 0, up.stderr[-3000:]
        compose.wait_ready()
        assert compose("port", "serve", "8080").stdout.strip() == f"127.0.0.1:{compose.port}"
