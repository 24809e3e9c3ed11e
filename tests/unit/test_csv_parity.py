"""One CSV, every door in-process: the batch job, DuckDB SQL, Spark (local) and HTTP CSV bodies read
each cell alike (every null spelling, quoted numbers, blanks, an unknown category) and name the
same bad cell (row and field). The containers' side is tests/integration/test_csv_parity.py."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mljobs.jobs import predict, sql
from tests.parity_csv import BAD_FIELD, BAD_ROW, parity_csv, row_count, row_ids


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("parity")
    (folder / "all.csv").write_text(parity_csv())
    (folder / "good.csv").write_text(parity_csv(without_bad_row=True))
    return {"all": folder / "all.csv", "good": folder / "good.csv", "folder": folder}


def store_flags(store: Path) -> list[str]:
    return ["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs")]


@pytest.fixture(scope="module")
def batch(demo_store, files, tmp_path_factory) -> dict:
    """The batch job over the whole file: its predictions by customer id, and its rejects."""
    out = tmp_path_factory.mktemp("batch")
    assert predict.main([*store_flags(demo_store), "--output", str(out), "--input", str(files["all"]),
                         "--keep-columns", "customer_id", "--proba", "--chunk-rows", "16"]) == 0
    [run] = out.glob("model=demo/date=*/run=*")
    return {"predictions": {r["customer_id"]: (r["prediction"], r["proba_yes"]) for r in pq.read_table(run / "predictions.parquet").to_pylist()},
            "rejects": pq.read_table(run / "rejects.parquet").to_pylist(),
            "summary": json.loads((run / "_SUCCESS").read_text())}


def test_batch_reads_every_spelling_and_rejects_only_the_bad_cell(batch):
    assert [(r["row"], r["reason"].split(":")[0]) for r in batch["rejects"]] == [(BAD_ROW, BAD_FIELD)]
    assert batch["rejects"][0]["reason"] == f"{BAD_FIELD}: expected a number, got 'forty'"
    assert batch["summary"]["rows"] == {"in": row_count(), "out": row_count() - 1, "rejected": 1}
    assert batch["summary"]["unseen_categories"] == {"region": 1}


def test_duckdb_sql_reads_the_file_as_the_batch_job_does(demo_store, files, batch, tmp_path, capsys):
    query = "SELECT customer_id, predict_demo(t) AS churn, predict_demo_proba(t).yes AS p_yes FROM '{}' t"
    assert sql.main([*store_flags(demo_store), "--output", str(tmp_path), query.format(files["good"])]) == 0
    [part] = tmp_path.glob("job=sql/date=*/run=*/result.parquet")
    rows = pq.read_table(part).to_pylist()
    assert {r["customer_id"]: (r["churn"], r["p_yes"]) for r in rows} == batch["predictions"]
    # The same through --table, and the bad file names the batch job's reject.
    capsys.readouterr()
    assert sql.main([*store_flags(demo_store), "--output", str(tmp_path), "--table", f"new={files['all']}",
                     "SELECT predict_demo(t) FROM new t"]) == 3
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"row {BAD_ROW}, column '{BAD_FIELD}': expected a number, got 'forty'" in last, last


def test_http_csv_bodies_read_the_file_as_the_batch_job_does(demo_store, files, batch):
    from mljobs.serve.app import create_app

    app = create_app({"MODELS_DIR": str(demo_store / "models"), "MODEL": "demo", "POLL_SECONDS": "3600"})
    try:
        client = app.test_client()
        good = files["good"].read_bytes().decode()  # as sent: read_text() would turn \r\n into \n
        reply = client.post("/predict", data=good, content_type="text/csv")
        assert reply.status_code == 200, reply.get_data(as_text=True)
        ids = row_ids(good)
        got = {i: (p["prediction"], p["probabilities"]["yes"]) for i, p in zip(ids, reply.get_json()["predictions"])}
        assert got == batch["predictions"]
        bad = client.post("/invocations", data=files["all"].read_bytes().decode(), content_type="text/csv")
        assert bad.status_code == 422
        fields = bad.get_json()["error"]["fields"]
        assert [(f["row"], f["field"]) for f in fields] == [(BAD_ROW, BAD_FIELD)]
        assert fields[0]["reason"] == "expected a number, got 'forty'"
    finally:
        app.extensions["mljobs.holder"].stop()


def test_spark_reads_the_file_as_the_batch_job_does(spark, demo_store, files, batch):
    from mljobs.csvdialect import spark_read_csv
    from mljobs.sql.spark_udf import prediction_udf

    spark.udf.register("predict_demo", prediction_udf(spark, demo_store / "models", "demo"))
    spark.udf.register("predict_demo_proba", prediction_udf(spark, demo_store / "models", "demo", proba=True))
    spark_read_csv(spark, str(files["good"])).createOrReplaceTempView("good")
    rows = spark.sql("SELECT customer_id, predict_demo(struct(*)) AS churn, predict_demo_proba(struct(*)).yes AS p_yes FROM good").collect()
    assert {r["customer_id"]: (r["churn"], r["p_yes"]) for r in rows} == batch["predictions"]
    spark_read_csv(spark, str(files["all"])).createOrReplaceTempView("everything")
    with pytest.raises(Exception, match=f"column '{BAD_FIELD}': expected a number, got 'forty'"):
        spark.sql("SELECT predict_demo(struct(*)) FROM everything").collect()
