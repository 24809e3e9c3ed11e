"""BigQuery-ML-like table functions in DuckDB (the sql job) and Spark: ml_predict equals the batch
job, ml_explain_predict's contributions add up to the raw score, ml_evaluate reproduces the
stored held-out metrics, ml_feature_importance lists the features; bad calls are one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mljobs import demo
from mljobs.jobs import predict, sql, train
from mljobs.predictor import Predictor, load_predictor
from mljobs.store import ModelStore
from mljobs.training import holdout_split
from tests.datasets import multiclass_table, regression_table

# name: (training table, target, rows to score)
TASKS = {
    "churn": (demo.training_table(rows=2000, seed=3).drop_columns(["customer_id"]), demo.TARGET),
    "species": (multiclass_table(), "species"),
    "price": (regression_table(), "price"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three models trained by the train job, each task's input and held-out rows as Parquet."""
    root = tmp_path_factory.mktemp("tf")
    for name, (table, target) in TASKS.items():
        pq.write_table(table, root / f"{name}-train.parquet")
        assert train.main(["--models-dir", str(root / "models"), "--runs-dir", str(root / "runs"), "--log-level", "WARNING",
                           "--input", str(root / f"{name}-train.parquet"), "--target", target, "--model", name,
                           "--params", json.dumps({"num_boost_round": 40})]) == 0
        _, held_out = holdout_split(table.num_rows, 0.2, 42)  # the job's defaults: --valid-fraction 0.2, --seed 42
        pq.write_table(table.take(pa.array(held_out)), root / f"{name}-held-out.parquet")
        pq.write_table(table.drop_columns([target]).append_column("row_id", pa.array(np.arange(table.num_rows))),
                       root / f"{name}-new.parquet")
    return root


def run_sql(store: Path, out: Path, query: str) -> int:
    return sql.main(["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs"), "--output", str(out),
                     "--log-level", "WARNING", "--show", "0", query])


def sql_rows(store: Path, out: Path, query: str) -> list[dict]:
    assert run_sql(store, out, query) == 0
    [part] = out.glob("job=sql/date=*/run=*/result.parquet")
    return pq.read_table(part).to_pylist()


def model(store: Path, name: str) -> Predictor:
    return load_predictor(ModelStore(store / "models"), name)


def batch_rows(store: Path, out: Path, name: str, *flags: str) -> list[dict]:
    assert predict.main(["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs"), "--output", str(out),
                         "--log-level", "WARNING", "--model", name, "--input", str(store / f"{name}-new.parquet"), "--keep-columns", "row_id", *flags]) == 0
    [part] = out.glob(f"model={name}/date=*/run=*/predictions.parquet")
    return pq.read_table(part).to_pylist()


@pytest.mark.parametrize("name", list(TASKS))
def test_duckdb_ml_predict_equals_the_batch_job(store, tmp_path, name):
    predictor = model(store, name)
    target = f"predicted_{predictor.schema.target}"
    rows = sql_rows(store, tmp_path / "sql", f"SELECT * FROM ml_predict('{name}', (SELECT * FROM '{store}/{name}-new.parquet'))")
    batch = {r["row_id"]: r for r in batch_rows(store, tmp_path / "batch", name, "--proba")}
    assert len(rows) == len(batch) == TASKS[name][0].num_rows
    for row in rows:
        expected = batch[row["row_id"]]
        assert row[target] == expected["prediction"]
        if predictor.is_classifier:  # list<struct(label, prob)>, every class in the model's order
            assert row[f"{target}_probs"] == [{"label": c, "prob": expected[f"proba_{c}"]} for c in predictor.schema.classes]
    assert set(rows[0]) >= set(TASKS[name][0].column_names) - {predictor.schema.target}  # input columns pass through


@pytest.mark.parametrize("name", list(TASKS))
def test_explanations_add_up_to_the_raw_score_in_sql_and_batch(store, tmp_path, name):
    predictor = model(store, name)
    new = pq.read_table(store / f"{name}-new.parquet")
    margin = predictor.raw_margin(predictor.featurizer.transform_table(new).matrix)
    query = f"SELECT * FROM ml_explain_predict('{name}', TABLE '{store}/{name}-new.parquet') ORDER BY row_id"
    for rows in (sql_rows(store, tmp_path / "sql", query),
                 sorted(batch_rows(store, tmp_path / "batch", name, "--explain"), key=lambda r: r["row_id"])):
        assert len(rows) == new.num_rows
        for row, raw in zip(rows, margin):
            total = row["baseline_prediction_value"] + sum(a["attribution"] for a in row["top_feature_attributions"])
            assert abs(total - row["prediction_value"]) < 1e-6
            # the predicted class's margin: for a binary model, class 0's is minus class 1's
            explained = raw.max() if len(raw) > 1 else raw[0]
            if len(predictor.schema.classes) == 2 and row.get(f"predicted_{predictor.schema.target}", row.get("prediction")) == predictor.schema.classes[0]:
                explained = -raw[0]
            assert abs(row["prediction_value"] - explained) < 1e-6
            assert {a["feature"] for a in row["top_feature_attributions"]} == set(predictor.schema.names)


def test_top_k_threshold_importance_and_csv_explanations(store, tmp_path):
    path = f"{store}/churn-new.parquet"
    top = sql_rows(store, tmp_path / "a", f"SELECT * FROM ml_explain_predict('churn', TABLE '{path}', STRUCT(2 AS top_k_features))")
    assert all(len(r["top_feature_attributions"]) == 2 for r in top)
    assert all(abs(r["top_feature_attributions"][0]["attribution"]) >= abs(r["top_feature_attributions"][1]["attribution"]) for r in top)
    strict = sql_rows(store, tmp_path / "b", f"SELECT predicted_churned AS p, predicted_churned_probs[2].prob AS yes "
                                             f"FROM ml_predict('churn', TABLE '{path}', threshold => 0.8)")
    assert {r["p"] for r in strict if r["yes"] > 0.8} == {"yes"} and {r["p"] for r in strict if r["yes"] <= 0.8} == {"no"}
    importance = sql_rows(store, tmp_path / "c", "SELECT * FROM ml_feature_importance('species:1') ORDER BY importance_gain DESC")
    assert {r["feature"] for r in importance} == {"x1", "x2", "colour", "count"}
    assert all(r["importance_weight"] >= 0 for r in importance) and importance[0]["importance_gain"] > 0
    assert predict.main(["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs"), "--output", str(tmp_path / "d"),
                         "--log-level", "WARNING", "--model", "churn", "--input", path, "--explain", "--top-k", "3", "--format", "csv"]) == 0
    [part] = (tmp_path / "d").glob("model=churn/date=*/run=*/predictions.csv")
    written = pacsv.read_csv(part).to_pylist()
    assert all(len(json.loads(r["top_feature_attributions"])) == 3 for r in written)
    assert set(written[0]) == {"prediction", "top_feature_attributions", "baseline_prediction_value", "prediction_value", "approximation_error"}


@pytest.mark.parametrize("name", list(TASKS))
def test_ml_evaluate_on_the_held_out_rows_equals_the_stored_metrics(store, tmp_path, name):
    [row] = sql_rows(store, tmp_path, f"SELECT * FROM ml_evaluate('{name}', (SELECT * FROM '{store}/{name}-held-out.parquet'))")
    assert row == model(store, name).metadata["metrics"]


@pytest.mark.parametrize(
    "query, code, message",
    [
        ("SELECT * FROM ml_predict('nope', TABLE '{new}')", 4, "ml_predict('nope'): model 'nope' does not exist"),
        ("SELECT * FROM ml_predict('churn:7', TABLE '{new}')", 4, "ml_predict('churn:7'): model 'churn' has no version 7"),
        ("SELECT * FROM ml_predict('churn@gold', TABLE '{new}')", 4, "model 'churn' has no alias 'gold'"),
        ("SELECT * FROM ml_predict('churn', TABLE '{new}', colour => 1)", 2, "ml_predict('churn') has no argument 'colour'"),
        ("SELECT * FROM ml_predict('species', TABLE '{new}', threshold => 0.3)", 2, "threshold is for binary classifiers"),
        ("SELECT * FROM ml_explain_predict('churn', TABLE '{new}', top_k => 0)", 2, "top_k must be a whole number"),
        ("SELECT * FROM ml_explain_predict('churn', TABLE '{new}', top_k => inf)", 2, "must be a finite number"),
        ("SELECT * FROM ml_predict(churn, TABLE '{new}')", 2, "the first argument must be the model as a string"),
        ("SELECT * FROM ml_predict('churn', (SELECT age FROM '{new}'))", 3, "column 'tenure_months': column missing"),
        ("SELECT * FROM ml_evaluate('churn', TABLE '{new}')", 2, "the rows have no column 'churned'"),
    ],
    ids=["model", "version", "alias", "argument", "threshold", "top-k", "top-k-infinite", "model-not-a-string", "columns", "no-label"],
)
def test_bad_calls_are_one_line_naming_the_problem(store, tmp_path, capsys, query, code, message):
    assert run_sql(store, tmp_path, query.format(new=f"{store}/churn-new.parquet")) == code
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err


def test_spark_table_functions_equal_duckdb_and_the_batch_job(spark, store, tmp_path):
    from mljobs.errors import ModelError, UsageError
    from mljobs.sql.spark_tables import ml_sql

    models = store / "models"
    spark.read.parquet(str(store / "churn-new.parquet")).createOrReplaceTempView("new")
    spark.read.parquet(str(store / "species-held-out.parquet")).createOrReplaceTempView("held")
    rows = [r.asDict(recursive=True) for r in ml_sql(spark, "SELECT * FROM ml_predict('churn', TABLE new)", models).collect()]
    duck = {r["row_id"]: r for r in sql_rows(store, tmp_path, f"SELECT * FROM ml_predict('churn', TABLE '{store}/churn-new.parquet')")}
    batch = {r["row_id"]: r["prediction"] for r in batch_rows(store, tmp_path / "batch", "churn")}
    assert len(rows) == len(duck) and all(r == duck[r["row_id"]] for r in rows)
    assert {r["row_id"]: r["predicted_churned"] for r in rows} == batch

    predictor = model(store, "churn")
    explained = ml_sql(spark, "SELECT * FROM ml_explain_predict('churn', (SELECT * FROM new WHERE row_id < 200), 4)", models).collect()
    for row in explained:
        assert len(row["top_feature_attributions"]) == 4 and row["approximation_error"] < 1e-6
    [metrics] = ml_sql(spark, "SELECT * FROM ml_evaluate('species', TABLE held)", models).collect()
    assert metrics.asDict() == model(store, "species").metadata["metrics"]
    importance = ml_sql(spark, "SELECT feature FROM ml_feature_importance('churn')", models).collect()
    assert [r["feature"] for r in importance] == predictor.schema.names
    # A bad value: its column and reason, and its row within the partition, said to be that.
    from pyspark.sql import functions as F

    bad = spark.read.parquet(str(store / "churn-new.parquet")).repartition(1).withColumn(
        "tenure_months", F.when(F.col("row_id") == 5, F.lit("x")).otherwise(F.col("tenure_months").cast("string")))
    bad.createOrReplaceTempView("bad")
    with pytest.raises(Exception, match=r"column 'tenure_months': expected a number, got 'x' \(rows counted from 0 within Spark partition 0\)"):
        ml_sql(spark, "SELECT * FROM ml_predict('churn', TABLE bad)", models).collect()
    held = spark.read.parquet(str(store / "churn-held-out.parquet")).repartition(1)
    held.withColumn("churned", F.when(F.monotonically_increasing_id() == 3, F.lit(None)).otherwise(F.col("churned"))
                    ).createOrReplaceTempView("unlabelled")
    with pytest.raises(Exception, match=r"row 3, column 'churned': the label is missing \(rows counted from 0 within Spark partition 0\)"):
        ml_sql(spark, "SELECT * FROM ml_evaluate('churn', TABLE unlabelled)", models).collect()
    # A bare model name scores with the version a caller chooses, as the SQL job's --model does.
    with pytest.raises(ModelError, match=r"ml_predict\('churn'\): model 'churn' has no version 9"):
        ml_sql(spark, "SELECT count(*) FROM ml_predict('churn', TABLE new)", models, models=["churn:9"])
    [[n]] = ml_sql(spark, "SELECT count(*) FROM ml_predict('churn', TABLE new)", models, models=["churn:1"]).collect()
    assert n == len(rows)
    with pytest.raises(ModelError, match=r"ml_predict\('churn:9'\): model 'churn' has no version 9"):
        ml_sql(spark, "SELECT * FROM ml_predict('churn:9', TABLE new)", models)
    with pytest.raises(UsageError, match="has no argument 'top'"):
        ml_sql(spark, "SELECT * FROM ml_explain_predict('churn', TABLE new, top => 3)", models)


def test_comments_and_strings_anywhere_a_user_writes_them(spark, store, tmp_path):
    """A comment where a space may be (after the inner query, before an option), a function's
    name inside a $$ string or an E'...' string with an escaped quote (DuckDB), or a string with a
    backslash-escaped quote (Spark): the same rows as the plain call."""
    from mljobs.sql.spark_tables import ml_sql

    new = f"{store}/churn-new.parquet"
    plain = sql_rows(store, tmp_path / "plain", f"SELECT * FROM ml_predict('churn', TABLE '{new}', 0.4)")
    commented = sql_rows(store, tmp_path / "commented", f"""SELECT * FROM ml_predict('churn', (SELECT * FROM '{new}' -- every row
        ) /* then the threshold */, threshold => 0.4 -- as above
    ) WHERE $$ ml_predict('x', (SELECT 1)) $$ <> '' AND E'it\\'s not ml_predict(' <> ''""")
    assert commented == plain

    spark.read.parquet(new).createOrReplaceTempView("new")
    rows = ml_sql(spark, r"""SELECT 'it\'s not ml_predict(' AS note, * FROM ml_predict('churn',
        (SELECT * FROM new WHERE 'O\'Brien' <> '' -- every row
        ), 0.4)""", store / "models").collect()
    by_id = {r["row_id"]: r for r in plain}
    assert len(rows) == len(plain) and {r["note"] for r in rows} == {"it's not ml_predict("}
    assert all(r["predicted_churned"] == by_id[r["row_id"]]["predicted_churned"] for r in rows)


def test_duckdb_inner_queries_see_registered_arrow_tables_and_nest(store):
    """S3 tables are Arrow datasets registered on the connection; the inner query runs on a
    cursor, which must see them too. A table function may read another's result."""
    import duckdb

    from mljobs.sql.duckdb_tables import register_table, run_with_table_functions

    con = duckdb.connect()
    register_table(con, "held", pq.read_table(store / "churn-held-out.parquet"))
    query = ("SELECT * FROM ml_evaluate('churn', (SELECT * EXCLUDE (predicted_churned, predicted_churned_probs) "
             "FROM ml_predict('churn', TABLE held)))")
    batches, functions = run_with_table_functions(con, query, lambda ref: load_predictor(ModelStore(store / "models"), ref))
    [row] = pa.Table.from_batches(list(batches)).to_pylist()
    assert row == model(store, "churn").metadata["metrics"]
    assert [p.name for p in functions.used] == ["churn", "churn"]


def test_the_sql_job_leaves_out_scikit_learn_only_when_the_query_allows_it(store, tmp_path):
    import subprocess

    from mljobs.sql.scoring_mode import lightgbm_only
    from mljobs.training import TrainSpec, publish
    from mljobs.training import train as fit

    models = ModelStore(store / "models")
    new = f"'{store}/churn-new.parquet'"
    assert lightgbm_only(models, f"SELECT * FROM ml_predict('churn', (SELECT * FROM ml_predict('species@latest', TABLE {new})))", {})
    assert not lightgbm_only(models, f"SELECT * FROM ml_evaluate('churn', TABLE {new})", {})  # metrics need scikit-learn
    assert not lightgbm_only(models, f"SELECT * FROM ml_predict('nope', TABLE {new})", {})
    forest = fit(TASKS["species"][0], TrainSpec("species", estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 3}))
    publish(ModelStore(tmp_path / "models"), "forest", forest, {"run_id": "t", "created": "now", "source": "test"})
    assert not lightgbm_only(ModelStore(tmp_path / "models"), "SELECT predict_forest(t) FROM t", {})

    # As its own process, scoring-only: the query runs without scikit-learn or pandas.
    query = f"SELECT count(*) AS n, count(DISTINCT predicted_churned) AS k FROM ml_predict('churn', TABLE {new})"
    as_main = ("import runpy, sys\ntry:\n    runpy.run_module('mljobs.jobs.sql', run_name='__main__')\n"
               "except SystemExit as end:\n    print('exit', end.code, 'sklearn' in sys.modules, 'pandas' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", as_main, "--models-dir", str(store / "models"), "--runs-dir",
                             str(store / "runs"), "--output", str(tmp_path / "out"), query],
                            capture_output=True, text=True, timeout=300)
    assert "{'n': 2000, 'k': 2}" in result.stdout and "exit 0 False False" in result.stdout, result.stdout + result.stderr[-2000:]
