"""Batch prediction in-process: rejects, strict mode, idempotent reruns, formats, numbering."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mljobs import demo
from mljobs.jobs import predict


@pytest.fixture
def out(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def run_predict(store: Path, out: Path, *flags: str) -> int:
    return predict.main(["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs"), "--output", str(out), *flags])


def run_folders(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("model=demo/date=*/run=*/_SUCCESS"))


def csv_with_bad_values(path: Path, rows: int = 50) -> Path:
    """Demo rows as text, with a bad number in row 3, a bad boolean in row 7, both in row 9."""
    table = demo.scoring_table(rows=rows, seed=21)
    columns = {name: table.column(name).cast(pa.string()).to_pylist() for name in table.column_names}
    columns["age"][3] = "forty"
    columns["has_support"][7] = "perhaps"
    columns["age"][9], columns["has_support"][9] = "?", "?"
    pacsv.write_csv(pa.table(columns), path)
    return path


def test_bad_rows_go_to_rejects_and_every_row_is_counted_once(demo_store, tmp_path, out):
    csv = csv_with_bad_values(tmp_path / "in.csv")
    assert run_predict(demo_store, out, "--input", str(csv), "--keep-columns", "customer_id", "--chunk-rows", "4") == 0
    [folder] = run_folders(out)
    predictions, rejects = pq.read_table(folder / "predictions.parquet"), pq.read_table(folder / "rejects.parquet")
    assert predictions.num_rows + rejects.num_rows == 50
    assert rejects.column("row").to_pylist() == [3, 7, 9]
    assert rejects.column("customer_id").to_pylist() == ["c21-000003", "c21-000007", "c21-000009"]
    assert rejects.column("reason").to_pylist() == [
        "age: expected a number, got 'forty'",
        "has_support: expected true or false, got 'perhaps'",
        "age: expected a number, got '?'; has_support: expected true or false, got '?'",
    ]
    assert set(predictions.column("customer_id").to_pylist()).isdisjoint(rejects.column("customer_id").to_pylist())
    summary = json.loads((folder / "_SUCCESS").read_text())
    assert summary["rows"] == {"in": 50, "out": 47, "rejected": 3}


def test_strict_fails_on_the_first_bad_row_and_writes_nothing(demo_store, tmp_path, out, capsys):
    csv = csv_with_bad_values(tmp_path / "in.csv")
    assert run_predict(demo_store, out, "--input", str(csv), "--strict") == 3
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "predict failed: row 3, column 'age': expected a number, got 'forty' (and 3 more)"
    )
    assert list(out.iterdir()) == []


def test_unseen_categories_are_scored_as_missing_and_counted_or_refused_under_strict(demo_store, tmp_path, out, capsys):
    table = demo.scoring_table(rows=10)
    plans = table.column("plan").to_pylist()
    plans[4] = "platinum"
    path = tmp_path / "in.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("plan"), "plan", pa.array(plans)), path)
    assert run_predict(demo_store, out, "--input", str(path)) == 0
    [folder] = run_folders(out)
    assert json.loads((folder / "_SUCCESS").read_text())["unseen_categories"] == {"plan": 1}
    assert pq.read_table(folder / "predictions.parquet").num_rows == 10
    assert run_predict(demo_store, out, "--input", str(path), "--strict") == 3
    assert "row 4, column 'plan': unknown category 'platinum'" in capsys.readouterr().err


def test_a_rerun_over_the_same_input_and_model_writes_no_second_copy(demo_store, tmp_path, out):
    path = tmp_path / "in.parquet"
    pq.write_table(demo.scoring_table(rows=30), path)
    assert run_predict(demo_store, out, "--input", str(path)) == 0
    assert run_predict(demo_store, out, "--input", str(path)) == 0
    assert len(run_folders(out)) == 1
    records = [json.loads(p.read_text()) for p in (demo_store / "runs").glob("*.json")]
    skipped = [r for r in records if r["status_detail"] == "already scored" and r["input"] == str(path)]
    assert len(skipped) == 1 and skipped[0]["output"] == str(run_folders(out)[0])
    assert run_predict(demo_store, out, "--input", str(path), "--proba") == 0  # other output, a new run
    assert run_predict(demo_store, out, "--input", str(path), "--force") == 0
    assert len(run_folders(out)) == 3


def test_csv_output_and_rows_numbered_per_file(demo_store, tmp_path, out):
    parts = tmp_path / "parts"
    parts.mkdir()
    csv_with_bad_values(parts / "a.csv", rows=12)
    csv_with_bad_values(parts / "b.csv", rows=12)
    assert run_predict(demo_store, out, "--input", str(parts / "*.csv"), "--format", "csv", "--proba") == 0
    [folder] = run_folders(out)
    predictions = pacsv.read_csv(folder / "predictions.csv")
    assert predictions.column_names == ["prediction", "proba_no", "proba_yes"]
    rejects = pacsv.read_csv(folder / "rejects.csv")
    assert list(zip(rejects.column("file").to_pylist(), rejects.column("row").to_pylist())) == [
        ("a.csv", 3), ("a.csv", 7), ("a.csv", 9), ("b.csv", 3), ("b.csv", 7), ("b.csv", 9)
    ]
    assert predictions.num_rows == 18


def test_chunk_size_does_not_change_the_predictions(demo_store, tmp_path):
    path = tmp_path / "in.csv"
    pacsv.write_csv(demo.scoring_table(rows=500), path)
    results = []
    for chunk in ("7", "100000"):
        out = tmp_path / f"out-{chunk}"
        out.mkdir()
        assert run_predict(demo_store, out, "--input", str(path), "--proba", "--chunk-rows", chunk) == 0
        [folder] = run_folders(out)
        results.append(pq.read_table(folder / "predictions.parquet"))
    assert results[0].equals(results[1])
