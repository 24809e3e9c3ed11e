"""The model as a SQL function: DuckDB on one machine, Spark where data outgrows it.

Both call the same core as the batch job (featurizer + verified model), so a row gets the same
prediction through SQL as through a file. Calling form, with the model's own column names:

    DuckDB:  SELECT *, predict_demo(t) AS churn FROM read_parquet('new.parquet') t
    Spark:   SELECT *, predict_demo(struct(*)) AS churn FROM new

`predict_<model>_proba(...)` gives a struct of class probabilities.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import pyarrow as pa

from ..errors import InvalidRecordsError
from ..predictor import Predictor
from ..store import ModelRef

FUNCTION_PATTERN = re.compile(r"\bpredict_([A-Za-z0-9_]+?)(_proba)?\s*\(", re.IGNORECASE)


def function_name(model: str, proba: bool = False) -> str:
    return "predict_" + re.sub(r"[^A-Za-z0-9_]", "_", model) + ("_proba" if proba else "")


def models_called(query: str) -> set[str]:
    """The model names a query calls as predict_<name>(...) or predict_<name>_proba(...)."""
    return {m.group(1) for m in FUNCTION_PATTERN.finditer(query)}


def model_choices(specs: Iterable[str]) -> dict[str, ModelRef]:
    """--model NAME@ALIAS|NAME:VERSION overrides, by model name."""
    return {ModelRef.parse(spec).name: ModelRef.parse(spec) for spec in specs}


def chosen_ref(text: str, choices: Mapping[str, ModelRef]) -> ModelRef:
    """The model a query names: as written when it says an alias or version, else the choice
    made for that name (--model), else its default alias."""
    ref = ModelRef.parse(text)
    return choices.get(ref.name, ref) if ref.alias is None and ref.version is None else ref


def label_type(predictor: Predictor) -> pa.DataType:
    if not predictor.is_classifier:
        return pa.float64()
    return pa.array(list(predictor.schema.classes)).type


def proba_type(predictor: Predictor) -> pa.DataType:
    return pa.struct([(str(c), pa.float64()) for c in predictor.schema.classes])


def score_rows(predictor: Predictor, rows: pa.Table, proba: bool) -> pa.Array:
    """Predictions (or class probabilities) for a table of rows; a bad value is an error that
    names the column (rows are numbered within the engine's batch, so they are not shown)."""
    columns, features = predictor.score_table(rows, proba=proba, threads=1)
    if features.errors:
        first = features.errors[0]
        raise InvalidRecordsError([type(first)(first.field, first.reason)])
    if not proba:
        return columns["prediction"]
    names = [str(c) for c in predictor.schema.classes]
    return pa.StructArray.from_arrays([columns[f"proba_{c}"] for c in predictor.schema.classes], names=names)


def struct_rows(values: Any) -> pa.Table:
    """A struct argument (one value per row) as a table of its fields."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pa.Table.from_struct_array(array)
