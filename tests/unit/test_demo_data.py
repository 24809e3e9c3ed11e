"""The demo's new rows are in the repo as data/input/new.csv (the tour's SQL line reads it), and
that file is exactly what the demo generates."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pacsv

from mljobs import demo

NEW_CSV = Path(__file__).resolve().parents[2] / "data" / "input" / "new.csv"


def test_the_committed_new_rows_are_the_demos():
    assert NEW_CSV.is_file(), "data/input/new.csv is missing: python -m mljobs.demo data/input/new.csv writes it"
    assert NEW_CSV.read_bytes() == demo.scoring_csv(), "out of date: python -m mljobs.demo data/input/new.csv rewrites it"


def test_the_new_rows_read_back_as_the_demos_columns():
    table = pacsv.read_csv(NEW_CSV)
    assert table.column_names == demo.scoring_table().column_names and table.num_rows == demo.scoring_table().num_rows
    assert table.column(demo.ID_COLUMN).to_pylist() == demo.scoring_table().column(demo.ID_COLUMN).to_pylist()
