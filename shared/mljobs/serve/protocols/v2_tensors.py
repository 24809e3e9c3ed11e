"""Reading a v2 infer request: its tensors (JSON or the binary extension), each checked against
its declared shape and datatype and MLServer's `content_type`, into the model's columns: one
tensor per feature, or one [N, F] matrix in the schema's order; and what the request asks back."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from ...schema import BOOLEAN, CATEGORICAL, NUMERIC, FeatureSchema
from ..errors import bad_request
from ..service import Columns
from . import v2_binary
from .bodies import JSON, columns_of, json_of, require
from .explaining import Explain, explain_asked

MATRIX_INPUT = "input-0"  # the name MLServer's NumpyRequestCodec gives its one tensor


INTEGERS = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: list[Any]  # flat, row-major


def matrix_datatype(schema: FeatureSchema) -> str:
    return "BYTES" if any(f.kind == CATEGORICAL for f in schema.features) else "FP64"


def flatten(data: list[Any]) -> list[Any]:
    """Nested JSON data (row-major) as a flat list, without recursion: the nesting is the client's."""
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def json_value_fits(datatype: str, value: Any, content_type: str = "") -> bool:
    if value is None:
        return True  # JSON's null is a missing value
    if datatype == "BYTES" and content_type == "np":  # NumpyRequestCodec on an object array: its values as they are
        return isinstance(value, (str, int, float))
    if datatype == "BYTES":
        return isinstance(value, str)
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype in INTEGERS:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float))  # FP*: true/false are taken as 1/0, as before


def text_of_element(name: str, value: Any, content_type: str) -> Any:
    """A BYTES element as the value it stands for ("" and null: missing)."""
    if isinstance(value, bytes):
        if content_type == "base64":
            return text_of_element(name, value.decode("ascii", "replace"), content_type)
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request(f"input '{name}': a BYTES element is not UTF-8 text") from None
    if not isinstance(value, str) or value == "":
        return None if value == "" else value
    if content_type == "base64":
        try:
            return base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise bad_request(f"input '{name}': an element is not base64 of UTF-8 text") from None
    if content_type == "pd_json":  # MLServer's PandasCodec: a mixed object column, one JSON text per value
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value  # a plain string in the column
    return value


def shape_of(name: str, shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad_request(f"input '{name}': shape must be a list of non-negative integers")
    return shape


def tensor_of(item: Any, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    """One input of the request, checked: its datatype known, its data the size its shape says
    and of its datatype. Returns the tensor and where the next binary tensor starts."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise bad_request("each input needs a 'name' and a 'data' list")
    name = item["name"]
    parameters = parameters_of(item.get("parameters"))
    datatype = item.get("datatype", "")
    if datatype not in v2_binary.DATATYPES:
        raise bad_request(f"input '{name}': datatype {str(datatype)[:20]!r} is not one of {', '.join(v2_binary.DATATYPES)}")
    shape = shape_of(name, item.get("shape"))
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise bad_request(f"input '{name}': binary_data_size {size!r} does not fit the {len(binary)} bytes sent after the header")
        values = v2_binary.decode(name, datatype, bytes(binary[offset:offset + size]))
        offset += size
    elif isinstance(item.get("data"), list):
        values = flatten(item["data"])
        content_type = str(parameters.get("content_type", ""))
        bad = next((v for v in values if not json_value_fits(datatype, v, content_type)), None)
        if bad is not None:
            raise bad_request(f"input '{name}': {json.dumps(bad)[:40]} is not a {datatype} value")
    else:
        raise bad_request(f"input '{name}' needs a 'data' list (or binary data)")
    if len(values) != math.prod(shape):
        raise bad_request(f"input '{name}': shape {shape} holds {math.prod(shape)} values but {len(values)} were sent")
    if datatype == "BYTES":
        content_type = str(parameters.get("content_type", ""))
        values = [text_of_element(name, v, content_type) for v in values]
    elif datatype in ("FP16", "FP32", "FP64"):
        values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    return Tensor(name, datatype, shape, values), offset


def is_matrix(tensors: list[Tensor], schema: FeatureSchema, request_type: str) -> bool:
    """One [N, F] tensor with the features in order (NumpyRequestCodec, Triton FIL), unless the
    request says its inputs are a data frame's columns."""
    if request_type == "np":
        return True
    if request_type == "pd" or len(tensors) != 1 or len(tensors[0].shape) != 2:
        return False
    only, width = tensors[0], len(schema.features)
    return only.shape[1] == width and (width > 1 or only.name not in schema.names)


def matrix_columns(tensor: Tensor, schema: FeatureSchema) -> Columns:
    width = len(schema.features)
    if len(tensor.shape) != 2 or tensor.shape[1] != width:
        raise bad_request(f"input '{tensor.name}': shape {tensor.shape} is not [N, {width}] ({', '.join(schema.names)})")
    categorical = [f.name for f in schema.features if f.kind == CATEGORICAL]
    if tensor.datatype != "BYTES" and categorical:
        raise bad_request(f"input '{tensor.name}': a {tensor.datatype} tensor cannot hold the categorical features "
                          f"({', '.join(categorical)}): send BYTES, one string per value")
    columns: dict[str, list[Any]] = {}
    for j, feature in enumerate(schema.features):
        values = tensor.values[j::width]
        if tensor.datatype == "BOOL" and feature.kind == NUMERIC:
            values = [None if v is None else float(v) for v in values]
        columns[feature.name] = values
    return columns_of(columns, "inputs")


def feature_columns(tensors: list[Tensor], schema: FeatureSchema) -> Columns:
    kinds = {f.name: f.kind for f in schema.features}
    columns: dict[str, list[Any]] = {}
    for tensor in tensors:
        if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise bad_request(f"input '{tensor.name}': shape {tensor.shape} is not [N] or [N, 1] (one feature), "
                              f"nor [N, {len(schema.features)}] (every feature)")
        if tensor.datatype == "BOOL" and kinds.get(tensor.name, BOOLEAN) != BOOLEAN:
            raise bad_request(f"input '{tensor.name}': datatype BOOL does not fit a {kinds[tensor.name]} feature")
        columns[tensor.name] = tensor.values
    return columns_of(columns, "inputs")


@dataclass(frozen=True)
class InferRequest:
    columns: Columns
    request_id: str | None
    outputs: dict[str, bool | None]  # the outputs asked for (all when empty); binary or not, None: the default
    binary_by_default: bool  # the request's binary_data_output
    explain: Explain | None = None  # parameters {"explain": true, "top_k": K}: add feature attributions


def payload_and_binary(body: bytes, content_type: str, headers: Mapping[str, str]) -> tuple[Any, bytes]:
    """The body is JSON whether or not a content type says so (v2 clients often send none)."""
    if v2_binary.HEADER in headers:
        require(content_type, (JSON, "", v2_binary.OCTETS))
        header, binary = v2_binary.split(body, headers[v2_binary.HEADER])
        return json_of(header), binary
    require(content_type, (JSON, ""))
    return json_of(body), b""


def parameters_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def decode(body: bytes, content_type: str, headers: Mapping[str, str], schema: FeatureSchema) -> InferRequest:
    payload, binary = payload_and_binary(body, content_type, headers)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise bad_request("send {\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}, ...]}: one input per feature, "
                          f"or one [N, {len(schema.features)}] input")
    tensors, offset, view = [], 0, memoryview(binary)
    for item in payload["inputs"]:
        tensor, offset = tensor_of(item, view, offset)
        tensors.append(tensor)
    if offset != len(binary):
        raise bad_request(f"{len(binary) - offset} bytes after the header belong to no input (binary_data_size)")
    request_type = str(parameters_of(payload.get("parameters")).get("content_type", ""))
    matrix = is_matrix(tensors, schema, request_type)
    if matrix and len(tensors) != 1:
        raise bad_request("content_type 'np' takes exactly one input")
    columns = matrix_columns(tensors[0], schema) if matrix else feature_columns(tensors, schema)
    request_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    parameters = parameters_of(payload.get("parameters"))
    return InferRequest(columns, request_id, requested_outputs(payload), parameters.get("binary_data_output") is True,
                        explain_asked(parameters.get("explain"), parameters.get("top_k"), "parameters"))


def requested_outputs(payload: dict[str, Any]) -> dict[str, bool | None]:
    asked = payload.get("outputs")
    if asked is None:
        return {}
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise bad_request("'outputs' must be a list of {\"name\", \"parameters\"?}")
    binary = {o["name"]: parameters_of(o.get("parameters")).get("binary_data") for o in asked}
    return {name: (flag if isinstance(flag, bool) else None) for name, flag in binary.items()}
