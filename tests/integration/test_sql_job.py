"""SQL in the predict image: `docker compose run --rm sql "..."` scores through the same model as
the batch job and writes its result to data/output atomically."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mljobs import demo

pytestmark = pytest.mark.integration


def test_sql_in_a_container_matches_the_batch_job_and_names_errors(compose):
    assert compose.run("train").returncode == 0
    rows = demo.scoring_table(rows=120, seed=50)
    pq.write_table(rows, compose.data_dir / "input" / "sql-new.parquet")
    pacsv.write_csv(pa.table({"customer_id": rows.column("customer_id"), "segment": pa.array(["a", "b", "c"] * 40)}),
                    compose.data_dir / "input" / "sql-accounts.csv")
    batch = compose.run("predict", "--input", "/data/input/sql-new.parquet", "--keep-columns", "customer_id", "--proba", "--force")
    assert batch.returncode == 0, batch.stderr[-2000:]
    part = max((compose.data_dir / "output").glob("model=demo/date=*/run=*/predictions.parquet"), key=lambda p: p.stat().st_mtime)
    expected = {r["customer_id"]: r["proba_yes"] for r in pq.read_table(part).to_pylist()}

    query = ("SELECT n.customer_id, a.segment, predict_demo_proba(n).yes AS p_yes "
             "FROM '/data/input/sql-new.parquet' n JOIN '/data/input/sql-accounts.csv' a USING (customer_id)")
    result = compose.run("sql", query)
    assert result.returncode == 0, result.stderr[-2000:]
    [out] = (compose.data_dir / "output").glob("job=sql/date=*/run=*/result.parquet")
    assert (out.parent / "_SUCCESS").exists()
    got = pq.read_table(out).to_pylist()
    assert {r["customer_id"]: r["p_yes"] for r in got} == expected and len(got) == 120

    bad = compose.run("sql", "SELECT predict_demo(n) FROM (SELECT age FROM '/data/input/sql-new.parquet') n")
    assert bad.returncode == 3
    assert bad.stderr.strip().splitlines()[-1] == (
        "sql failed: the query's rows do not fit the model: column 'tenure_months': column missing from the input (and 4 more)"
    )
