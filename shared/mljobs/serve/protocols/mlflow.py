"""MLflow's scoring-server request formats: dataframe_split, dataframe_records, instances or inputs
(JSON), or CSV with or without a header; the reply is {"predictions": [...]} (labels for
classifiers), or CSV when the client accepts it. The /invocations route, which MLflow shares with
SageMaker, is in sagemaker.py."""

from __future__ import annotations

import csv
import io
from typing import Any

from ...schema import FeatureSchema
from ..service import Columns
from ..errors import bad_request
from .bodies import CSV, JSON, Record, columns_of, csv_records, json_of, records_of, require, rows_to_records

KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def decode(body: bytes, content_type: str, schema: FeatureSchema) -> list[Record] | Columns:
    require(content_type, (JSON, CSV))
    if content_type == CSV:
        return csv_records(body, schema)
    payload = json_of(body)
    keys = [k for k in KEYS if isinstance(payload, dict) and k in payload]
    if len(keys) != 1:
        raise bad_request(f"send a JSON object with exactly one of {', '.join(KEYS)}")
    value = payload[keys[0]]
    if keys[0] == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list) or not isinstance(value.get("data"), list):
            raise bad_request("dataframe_split needs 'columns' (a list of names) and 'data' (a list of rows)")
        return rows_to_records(value["data"], value["columns"], "dataframe_split")
    if keys[0] == "inputs" and isinstance(value, dict):
        return columns_of(value, "inputs")
    if isinstance(value, list) and value and isinstance(value[0], list):  # rows in schema order
        return rows_to_records(value, schema.names, keys[0])
    return records_of(value, keys[0])


def csv_reply(predictions: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([p] for p in predictions)
    return out.getvalue()


COMPONENTS = {
    "MlflowRequest": {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": {
        "dataframe_split": {"type": "object", "required": ["columns", "data"], "properties": {
            "columns": {"type": "array", "items": {"type": "string"}}, "data": {"type": "array", "items": {"type": "array"}}}},
        "dataframe_records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
        "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
        "inputs": {"type": "object", "description": "columns: feature name -> list of values"},
    }},
}
