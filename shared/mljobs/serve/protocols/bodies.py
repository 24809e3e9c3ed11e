"""What the protocols share to read a body: text, JSON, CSV, records and columns. Framework-free:
bytes and a content type in, plain Python out (MLflow's scoring-server shape)."""

from __future__ import annotations

import csv
import json
from typing import Any

from ...csvdialect import cell_value, text_rows
from ...schema import FeatureSchema
from ..errors import ApiError, bad_request, unsupported_media_type
from ..service import Columns

JSON, CSV = "application/json", "text/csv"
Record = dict[str, Any]


def text_of(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise unsupported_media_type("the body is not UTF-8 text") from None


def json_of(body: bytes) -> Any:
    try:
        return json.loads(text_of(body))
    except ValueError as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad_request("the body's JSON is nested too deeply") from None


def require(content_type: str, allowed: tuple[str, ...]) -> None:
    """`allowed` may hold "" for requests that send no content type at all."""
    if content_type not in allowed:
        named = " or ".join(t for t in allowed if t) + (" (or no content type)" if "" in allowed else "")
        raise unsupported_media_type(f"send {named}, not {content_type or 'no content type'}")


def csv_records(body: bytes, schema: FeatureSchema) -> list[Record]:
    """CSV rows as records, in the one dialect (mljobs.csvdialect: its null spellings are missing).
    A first row naming every feature is a header; without one the columns are the features in
    schema order (SageMaker's convention)."""
    try:
        rows = [row for row in text_rows(text_of(body)) if row]  # empty lines are no rows, as in files
    except csv.Error as exc:
        raise bad_request(f"the CSV body is not valid CSV: {exc}") from None
    if not rows:
        raise bad_request("the CSV body has no rows")
    names = schema.names
    if set(names) <= set(rows[0]):
        header, rows = rows[0], rows[1:]
    else:
        header = names
    records = []
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ApiError(400, "bad_request", f"CSV row {i} has {len(row)} values, expected {len(header)}",
                           [{"field": "(row)", "reason": f"{len(row)} values, expected {len(header)}", "row": i}])
        records.append({k: cell_value(v) for k, v in zip(header, row)})
    if not records:
        raise bad_request("the CSV body has a header but no rows")
    return records


def records_of(value: Any, what: str) -> list[Record]:
    """One record object, or a non-empty list of them."""
    records = value if isinstance(value, list) else [value]
    if not records:
        raise bad_request(f"{what} is an empty list: send at least one record")
    return records


def columns_of(columns: dict[str, Any], what: str) -> Columns:
    """Named columns of equal length (a lone value is a column of one)."""
    values = {k: (v if isinstance(v, list) else [v]) for k, v in columns.items()}
    lengths = {len(v) for v in values.values()}
    if len(lengths) != 1:
        raise bad_request(f"{what}: every column must have the same number of values")
    rows = lengths.pop()
    if rows == 0:
        raise bad_request(f"{what}: the columns hold no values: send at least one row")
    return Columns(values, rows)


def rows_to_records(rows: list[Any], columns: list[Any], what: str) -> list[Record]:
    if not all(isinstance(c, str) for c in columns):
        raise bad_request(f"{what}: 'columns' must be a list of column names (strings)")
    if not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
        raise bad_request(f"{what}: each row must be a list of {len(columns)} values ({', '.join(columns)})")
    return [dict(zip(columns, row)) for row in rows]
