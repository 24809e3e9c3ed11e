"""Stored models as vectorized (Arrow) DuckDB functions."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from ..predictor import Predictor
from . import function_name, label_type, proba_type, score_rows, struct_rows

DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN", pa.float64(): "DOUBLE"}


def register(con: duckdb.DuckDBPyConnection, predictor: Predictor) -> list[str]:
    """Register predict_<model>(row) and, for classifiers, predict_<model>_proba(row)."""
    names = [function_name(predictor.name)]
    con.create_function(names[0], lambda rows: score_rows(predictor, struct_rows(rows), proba=False),
                        None, duckdb.sqltype(DUCKDB_TYPES[label_type(predictor)]), type="arrow", null_handling="special")  # type: ignore[call-overload]
    if predictor.is_classifier:
        names.append(function_name(predictor.name, proba=True))
        struct = ", ".join(f'"{f.name}" DOUBLE' for f in proba_type(predictor))
        con.create_function(names[1], lambda rows: score_rows(predictor, struct_rows(rows), proba=True),
                            None, duckdb.sqltype(f"STRUCT({struct})"), type="arrow", null_handling="special")  # type: ignore[call-overload]
    return names


def run_query(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    """The query's result as a streaming Arrow reader."""
    return con.sql(query).to_arrow_reader()
