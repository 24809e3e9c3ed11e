"""The output root of predict and sql is made when missing (as `mkdir -p` would), and a root that
cannot be made is one clear sentence with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mljobs.jobs import predict, sql


def store_flags(demo_store: Path) -> list[str]:
    return ["--models-dir", str(demo_store / "models"), "--runs-dir", str(demo_store / "runs")]


def test_predict_creates_a_missing_output_folder_and_its_parents(demo_store, tmp_path):
    out = tmp_path / "output" / "daily" / "eu"
    assert predict.main([*store_flags(demo_store), "--output", str(out)]) == 0
    assert len(list(out.glob("model=demo/date=*/run=*/predictions.parquet"))) == 1


def test_sql_creates_a_missing_output_folder(demo_store, tmp_path):
    out = tmp_path / "output" / "sql"
    assert sql.main([*store_flags(demo_store), "--output", str(out), "SELECT 42 AS answer"]) == 0
    assert len(list(out.glob("job=sql/date=*/run=*/result.parquet"))) == 1


@pytest.mark.parametrize("job", [predict, sql], ids=["predict", "sql"])
def test_an_output_folder_that_cannot_be_made_exits_2_with_its_reason(demo_store, tmp_path, capsys, job):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "daily"  # the tests run as root, so a file in the way is what stops mkdir
    extra = ["SELECT 1"] if job is sql else []
    assert job.main([*store_flags(demo_store), "--output", str(out), *extra]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"cannot create output folder {out}: not a directory" in last and "Traceback" not in last


def test_an_output_path_that_is_a_file_exits_2(demo_store, tmp_path, capsys):
    (tmp_path / "out").write_text("")
    assert predict.main([*store_flags(demo_store), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"output {tmp_path / 'out'} is a file, not a folder")
