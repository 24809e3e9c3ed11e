"""Request bodies of every protocol turned into records, and predictions into each protocol's
reply. Framework-free: bytes and a content type in, plain Python out (MLflow's scoring-server
shape), so each HTTP view is a few lines and tests need no server."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from ..schema import CATEGORICAL, NUMERIC, FeatureSchema
from .errors import ApiError, bad_request, unsupported_media_type

JSON, CSV = "application/json", "text/csv"
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
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


def require(content_type: str, allowed: tuple[str, ...]) -> None:
    if content_type not in allowed:
        raise unsupported_media_type(f"send {' or '.join(allowed)}, not {content_type or 'no content type'}")


def csv_records(body: bytes, schema: FeatureSchema) -> list[Record]:
    """CSV rows as records. A first row naming every feature is a header; without one the
    columns are the features in schema order (SageMaker's convention). Empty cells are missing."""
    rows = list(csv.reader(io.StringIO(text_of(body))))
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
        records.append({k: (v if v != "" else None) for k, v in zip(header, row)})
    if not records:
        raise bad_request("the CSV body has a header but no rows")
    return records


def records_of(value: Any, what: str) -> list[Record]:
    """One record object, or a non-empty list of them."""
    records = value if isinstance(value, list) else [value]
    if not records:
        raise bad_request(f"{what} is an empty list: send at least one record")
    return records


def columns_to_records(columns: dict[str, Any], what: str) -> list[Record]:
    lengths = {len(v) if isinstance(v, list) else 1 for v in columns.values()}
    if len(lengths) != 1:
        raise bad_request(f"{what}: every column must have the same number of values")
    n = lengths.pop()
    return [{k: (v[i] if isinstance(v, list) else v) for k, v in columns.items()} for i in range(n)]


def rows_to_records(rows: list, columns: list[str], what: str) -> list[Record]:
    if not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
        raise bad_request(f"{what}: each row must be a list of {len(columns)} values ({', '.join(columns)})")
    return [dict(zip(columns, row)) for row in rows]


# --- native ------------------------------------------------------------------------------

def native_request(body: bytes, content_type: str, schema: FeatureSchema) -> list[Record]:
    require(content_type, (JSON, CSV))
    if content_type == CSV:
        return csv_records(body, schema)
    return records_of(json_of(body), "the body")


# --- MLflow scoring server and SageMaker -------------------------------------------------

def mlflow_request(body: bytes, content_type: str, schema: FeatureSchema) -> list[Record]:
    require(content_type, (JSON, CSV))
    if content_type == CSV:
        return csv_records(body, schema)
    payload = json_of(body)
    keys = [k for k in MLFLOW_KEYS if isinstance(payload, dict) and k in payload]
    if len(keys) != 1:
        raise bad_request(f"send a JSON object with exactly one of {', '.join(MLFLOW_KEYS)}")
    value = payload[keys[0]]
    if keys[0] == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list) or not isinstance(value.get("data"), list):
            raise bad_request("dataframe_split needs 'columns' (a list of names) and 'data' (a list of rows)")
        return rows_to_records(value["data"], value["columns"], "dataframe_split")
    if keys[0] == "inputs" and isinstance(value, dict):
        return columns_to_records(value, "inputs")
    if isinstance(value, list) and value and isinstance(value[0], list):  # rows in schema order
        return rows_to_records(value, schema.names, keys[0])
    return records_of(value, keys[0])


def mlflow_reply(predictions: list[Any]) -> dict[str, Any]:
    return {"predictions": predictions}


def csv_reply(predictions: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([p] for p in predictions)
    return out.getvalue()


# --- Open Inference Protocol (KServe v2) ---------------------------------------------------

V2_TYPES = {NUMERIC: "FP64", CATEGORICAL: "BYTES", "boolean": "BOOL"}


def v2_metadata(name: str, version: str, schema: FeatureSchema, outputs: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "name": name,
        "versions": [version],
        "platform": "mljobs",
        "inputs": [{"name": f.name, "datatype": V2_TYPES[f.kind], "shape": [-1]} for f in schema.features],
        "outputs": [{"name": n, "datatype": t, "shape": [-1]} for n, t in outputs],
    }


def v2_request(body: bytes, content_type: str, binary_header: bool = False) -> tuple[list[Record], str | None]:
    """One input tensor per feature (shape [N] or [N, 1]), as the v2 protocol sends columns.
    The body is JSON whether or not a content type says so (v2 clients often send none)."""
    require(content_type, (JSON, ""))
    if binary_header:
        raise bad_request("binary tensor data (a Triton extension) is not supported: send JSON tensors (binary_data=False)")
    payload = json_of(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise bad_request("send {\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}, ...]}, one input per feature")
    columns: dict[str, Any] = {}
    for tensor in payload["inputs"]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str) or not isinstance(tensor.get("data"), list):
            raise bad_request("each input needs a 'name' and a 'data' list")
        data = tensor["data"]
        if data and all(isinstance(v, list) and len(v) == 1 for v in data):  # shape [N, 1]
            data = [v[0] for v in data]
        columns[tensor["name"]] = data
    request_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    return columns_to_records(columns, "inputs"), request_id


def v2_tensor(name: str, values: list[Any]) -> dict[str, Any]:
    datatype = "BYTES" if values and isinstance(values[0], str) else "BOOL" if values and isinstance(values[0], bool) else (
        "INT64" if values and isinstance(values[0], int) else "FP64")
    return {"name": name, "datatype": datatype, "shape": [len(values)], "data": values}
