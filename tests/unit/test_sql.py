"""Ad-hoc SQL: the same rows through DuckDB SQL, Spark SQL and the batch job give identical
predictions; joins work in both engines; bad SQL, unknown models and wrong columns are named."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mljobs import demo
from mljobs.errors import ModelError
from mljobs.jobs import predict, sql

ROWS = 300


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sqldata")
    table = demo.scoring_table(rows=ROWS, seed=40)
    pq.write_table(table, folder / "new.parquet")
    accounts = pa.table({"customer_id": table.column("customer_id"), "segment": pa.array(["retail", "business", "public"] * (ROWS // 3))})
    pacsv.write_csv(accounts, folder / "accounts.csv")
    return {"new": folder / "new.parquet", "accounts": folder / "accounts.csv", "folder": folder}


@pytest.fixture(scope="module")
def batch(demo_store, files, tmp_path_factory) -> list[dict]:
    """The batch job's predictions for the same rows, the reference for every engine."""
    out = tmp_path_factory.mktemp("batch")
    assert predict.main(["--models-dir", str(demo_store / "models"), "--runs-dir", str(demo_store / "runs"),
                         "--output", str(out), "--input", str(files["new"]), "--keep-columns", "customer_id", "--proba"]) == 0
    [part] = out.glob("model=demo/date=*/run=*/predictions.parquet")
    return pq.read_table(part).to_pylist()


def run_sql(demo_store, out, *argv) -> int:
    return sql.main(["--models-dir", str(demo_store / "models"), "--runs-dir", str(demo_store / "runs"), "--output", str(out), *argv])


def sql_result(out: Path) -> list[dict]:
    [part] = sorted(out.glob("job=sql/date=*/run=*/result.parquet"), key=lambda p: p.stat().st_mtime)[-1:]
    return pq.read_table(part).to_pylist()


def test_duckdb_sql_equals_the_batch_job_and_joins(demo_store, files, batch, tmp_path):
    query = (f"SELECT c.customer_id, a.segment, predict_demo(c) AS churn, predict_demo_proba(c).yes AS p_yes "
             f"FROM '{files['new']}' c JOIN '{files['accounts']}' a USING (customer_id) ORDER BY c.customer_id")
    assert run_sql(demo_store, tmp_path, query) == 0
    rows = sql_result(tmp_path)
    assert len(rows) == ROWS
    expected = {r["customer_id"]: (r["prediction"], r["proba_yes"]) for r in batch}
    assert {r["customer_id"]: (r["churn"], r["p_yes"]) for r in rows} == expected
    assert {r["segment"] for r in rows} == {"retail", "business", "public"}
    summary = json.loads(next(tmp_path.glob("job=sql/date=*/run=*/_SUCCESS")).read_text())
    assert summary["rows"] == {"out": ROWS} and summary["model"] == {"name": "demo", "version": "1"}


@pytest.mark.parametrize(
    "query, code, message",
    [
        ("SELEC 1", 2, "the query is not valid: Parser Error"),
        ("SELECT * FROM missing_table", 2, "the query is not valid: Catalog Error"),
        ("SELECT predict_nope(c) FROM '{new}' c", 4, "there is no model 'nope'"),
        ("SELECT predict_demo(c) FROM (SELECT age, plan FROM '{new}') c", 3,
         "the query's rows do not fit the model: column 'tenure_months': column missing from the input"),
        ("SELECT predict_demo(c) FROM (SELECT * REPLACE ('old' AS age) FROM '{new}') c", 3,
         "the query's rows do not fit the model: column 'age': expected a number, got 'old'"),
        ("SELECT * FROM '{folder}/nope.parquet'", 3, "the query failed on its input"),
    ],
    ids=["syntax", "unknown-table", "unknown-model", "missing-columns", "bad-value", "missing-file"],
)
def test_duckdb_errors_name_the_problem(demo_store, files, tmp_path, capsys, query, code, message):
    query = query.format(new=files["new"], folder=files["folder"])
    assert run_sql(demo_store, tmp_path, query) == code
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in last and "Traceback" not in last
    assert not list(tmp_path.glob("job=sql/date=*/run=*"))


def test_spark_sql_equals_the_batch_job_and_joins(spark, demo_store, files, batch):
    from mljobs.sql.spark_udf import prediction_udf, score_dataframe

    spark.read.parquet(str(files["new"])).createOrReplaceTempView("new")
    spark.read.option("header", True).csv(str(files["accounts"])).createOrReplaceTempView("accounts")
    spark.udf.register("predict_demo", prediction_udf(spark, demo_store / "models", "demo"))
    spark.udf.register("predict_demo_proba", prediction_udf(spark, demo_store / "models", "demo", proba=True))
    rows = spark.sql(
        "SELECT n.customer_id, a.segment, predict_demo(struct(n.*)) AS churn, predict_demo_proba(struct(n.*)).yes AS p_yes "
        "FROM new n JOIN accounts a ON n.customer_id = a.customer_id"
    ).collect()
    expected = {r["customer_id"]: (r["prediction"], r["proba_yes"]) for r in batch}
    assert {r["customer_id"]: (r["churn"], r["p_yes"]) for r in rows} == expected
    assert {r["segment"] for r in rows} == {"retail", "business", "public"}

    whole = score_dataframe(spark.table("new"), spark, demo_store / "models", "demo").collect()
    assert {r["customer_id"]: (r["prediction"], r["proba_yes"]) for r in whole} == expected


def test_spark_errors_name_the_problem(spark, demo_store, files):
    from mljobs.sql.spark_udf import prediction_udf

    with pytest.raises(ModelError, match="model 'nope' does not exist"):
        prediction_udf(spark, demo_store / "models", "nope")
    spark.udf.register("predict_demo", prediction_udf(spark, demo_store / "models", "demo"))
    spark.read.parquet(str(files["new"])).select("age", "plan").createOrReplaceTempView("narrow")
    with pytest.raises(Exception, match="column 'tenure_months': column missing from the input"):
        spark.sql("SELECT predict_demo(struct(*)) FROM narrow").collect()


def test_a_table_whose_file_is_missing_is_bad_input_named_by_its_table(demo_store, tmp_path, capsys):
    code = run_sql(demo_store, tmp_path, "SELECT * FROM new", "--table", f"new={tmp_path / 'nope.csv'}")
    err = capsys.readouterr().err
    assert code == 3 and "--table new:" in err.strip().splitlines()[-1] and "Traceback" not in err
