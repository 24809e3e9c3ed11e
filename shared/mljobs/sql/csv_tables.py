"""The SQL job's CSV tables, read in the one dialect (mljobs.csvdialect) like the batch job reads
them: a `--table NAME=PATH.csv` and a '...csv' path named in the query are both views over
DuckDB's typed reader, with the null spellings, quoting and header of the dialect, and the called
models' numeric features read as DOUBLE, the others as text for the featurizer.

A value DuckDB cannot convert fails the query; the failure is then explained as the batch job
would reject the row: the file is read again by the batch reader and the first bad row and field
are named, with the featurizer's own reason.
"""

from __future__ import annotations

import csv
import glob
import re
from dataclasses import dataclass, field
from typing import Any

from .. import csvdialect
from ..errors import BadInputError, InvalidRecordsError
from ..predictor import Predictor
from ..schema import NUMERIC
from ..tableio import iter_batches, resolve_inputs

# A quoted path ending in .csv right after FROM or JOIN: DuckDB would read it with its own defaults.
CSV_LITERAL = re.compile(r"\b(?:FROM|JOIN)\s+'((?:[^']|'')*\.csv)'", re.IGNORECASE)
DIAGNOSE_CHUNK_ROWS = 100_000


@dataclass
class CsvTables:
    """The CSV views of one connection, and how to explain a value that failed in them."""

    predictors: list[Predictor]
    tables: dict[str, str] = field(default_factory=dict)  # label -> path

    def column_types(self) -> dict[str, str]:
        """DOUBLE for a feature every called model reads as a number; VARCHAR for the others."""
        types: dict[str, str] = {}
        for predictor in self.predictors:
            for feature in predictor.schema.features:
                wanted = "DOUBLE" if feature.kind == NUMERIC else "VARCHAR"
                types[feature.name] = wanted if types.get(feature.name, wanted) == wanted else "VARCHAR"
        return types

    def create_view(self, con: Any, name: str, path: str, label: str) -> None:
        header = set(csv_header(path))
        types = {k: v for k, v in self.column_types().items() if k in header}
        quoted = name.replace('"', '""')
        # The same user writes the query itself: quoting keeps names and paths literal, no more.
        con.execute(f'CREATE VIEW "{quoted}" AS SELECT * FROM {csvdialect.duckdb_read_csv(path, types)}')  # nosec B608
        self.tables[label] = path

    def add_query_paths(self, con: Any, query: str) -> None:
        """A view named as each quoted CSV path in the query: DuckDB finds a view before it
        falls back to reading a quoted name as a file, so the query reads it in the dialect."""
        for literal in {m.group(1) for m in CSV_LITERAL.finditer(query)}:
            path = literal.replace("''", "'")
            if glob.glob(path):
                self.create_view(con, path, path, f"'{path}'")

    def explain_failure(self) -> BadInputError | None:
        """The first value of a CSV table that a called model rejects, named as the batch job
        names it (file, row from 0 after the header, column, reason); None if there is none."""
        import pyarrow as pa

        for label, path in self.tables.items():
            text = {f.name: pa.string() for p in self.predictors for f in p.schema.features}
            for file in resolve_inputs(path):
                first_row = 0
                for _, batch in iter_batches([file], DIAGNOSE_CHUNK_ROWS, text):
                    for predictor in self.predictors:
                        try:
                            errors = predictor.featurizer.transform_table(batch, first_row).errors
                        except InvalidRecordsError:
                            continue  # a column missing: not the value that failed
                        if errors:
                            e = errors[0]
                            return BadInputError(f"table {label}, file {file.name}: row {e.row}, column '{e.field}': {e.reason}")
                    first_row += batch.num_rows
        return None


# One set of CSV views per open connection (a job opens one).
_TABLES: dict[int, CsvTables] = {}


def csv_tables(con: Any, predictors: list[Predictor]) -> CsvTables:
    tables = _TABLES[id(con)] = CsvTables(predictors)
    return tables


def explain_failure(con: Any) -> BadInputError | None:
    tables = _TABLES.get(id(con))
    return tables.explain_failure() if tables else None


def csv_header(path: str) -> list[str]:
    """The column names in the header of `path` (of the first file a glob matches)."""
    files = sorted(glob.glob(path)) or [path]
    try:
        with open(files[0], encoding="utf-8-sig", newline="") as f:
            return next(csvdialect.text_rows(f.readline()), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # DuckDB's own reader then says what is wrong with the file
