"""One CSV through every door in real containers (the batch job, the SQL job, the HTTP server): the
same predictions and the same reject (row and field). tests/unit/test_csv_parity.py runs the
same file through Spark (local mode) and the same doors in-process."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import requests

from mljobs.jobs import predict
from mljobs.predictor import load_predictor
from mljobs.store import ModelStore
from tests.parity_csv import BAD_FIELD, BAD_ROW, parity_csv, row_count, row_ids

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def parity(compose) -> dict:
    """demo trained in a container, the parity files in the input folder, and the batch job's
    answer from a container: predictions by customer id, rejects, summary."""
    trained = compose.run("train")
    assert trained.returncode == 0, trained.stderr[-3000:]
    (compose.data_dir / "input" / "parity.csv").write_text(parity_csv())
    (compose.data_dir / "input" / "parity-good.csv").write_text(parity_csv(without_bad_row=True))
    result = compose.run("predict", "--input", "/data/input/parity.csv", "--keep-columns", "customer_id", "--proba")
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = (compose.data_dir / "output").glob("model=demo/date=*/run=*")
    return {
        "predictions": {r["customer_id"]: (r["prediction"], r["proba_yes"]) for r in pq.read_table(run / "predictions.parquet").to_pylist()},
        "rejects": [(r["row"], r["reason"]) for r in pq.read_table(run / "rejects.parquet").to_pylist()],
        "summary": json.loads((run / "_SUCCESS").read_text()),
    }


def test_one_csv_means_the_same_rows_at_every_door(compose, parity, tmp_path):
    # The batch job: one reject, the bad cell, and every other row scored.
    assert parity["rejects"] == [(BAD_ROW, f"{BAD_FIELD}: expected a number, got 'forty'")]
    assert parity["summary"]["rows"] == {"in": row_count(), "out": row_count() - 1, "rejected": 1}
    assert parity["summary"]["unseen_categories"] == {"region": 1}
    # ... equal to the same file scored in-process (where Spark's parity is checked).
    store = compose.copy_store("demo", tmp_path / "store")
    assert load_predictor(ModelStore(store), "demo").version == parity["summary"]["model"]["version"]
    assert predict.main(["--models-dir", str(store), "--runs-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "out"),
                         "--input", str(compose.data_dir / "input" / "parity.csv"), "--keep-columns", "customer_id", "--proba"]) == 0
    [local] = (tmp_path / "out").glob("model=demo/date=*/run=*/predictions.parquet")
    assert {r["customer_id"]: (r["prediction"], r["proba_yes"]) for r in pq.read_table(local).to_pylist()} == parity["predictions"]

    # The SQL job: the file read in the dialect ("NA" and the rest are missing, not a failure).
    query = ("SELECT customer_id, predict_demo(t) AS churn, predict_demo_proba(t).yes AS p_yes "
             "FROM '/data/input/parity-good.csv' t")
    sql = compose.run("sql", query)
    assert sql.returncode == 0, sql.stderr[-3000:]
    [result] = (compose.data_dir / "output").glob("job=sql/date=*/run=*/result.parquet")
    assert {r["customer_id"]: (r["churn"], r["p_yes"]) for r in pq.read_table(result).to_pylist()} == parity["predictions"]
    # ... and the whole file fails naming the batch job's reject (row, field, reason), exit 3.
    bad = compose.run("sql", "--table", "t=/data/input/parity.csv", "SELECT predict_demo(t) FROM t")
    assert bad.returncode == 3
    assert f"row {BAD_ROW}, column '{BAD_FIELD}': expected a number, got 'forty'" in bad.stderr.strip().splitlines()[-1]

    # The HTTP server: the same rows as a CSV body, and the same reject for the whole file.
    up = compose("up", "-d", "serve")
    assert up.returncode == 0, up.stderr[-3000:]
    compose.wait_ready()
    good = (compose.data_dir / "input" / "parity-good.csv").read_bytes().decode()
    reply = requests.post(compose.url("/predict"), data=good, headers={"Content-Type": "text/csv"}, timeout=30)
    assert reply.status_code == 200, reply.text[:2000]
    ids = row_ids(good)
    served = {i: (p["prediction"], p["probabilities"]["yes"]) for i, p in zip(ids, reply.json()["predictions"])}
    assert served == parity["predictions"]
    refused = requests.post(compose.url("/invocations"), data=parity_csv(), headers={"Content-Type": "text/csv"}, timeout=30)
    assert refused.status_code == 422
    assert [(f["row"], f["field"], f["reason"]) for f in refused.json()["error"]["fields"]] == [
        (BAD_ROW, BAD_FIELD, "expected a number, got 'forty'")]
