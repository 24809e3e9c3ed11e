"""The Open Inference Protocol (KServe v2): server and model metadata, readiness, and infer.

Infer takes one tensor per feature (shape [N] or [N, 1]) or one [N, F] tensor with the features
in the schema's order (numeric datatypes for all-numeric models, BYTES otherwise), as JSON or with
the binary tensor extension (v2_binary.py), and honours MLServer's `content_type` parameters
(v2_tensors.py reads requests). Declared shapes and datatypes are checked against the data.
Errors take the protocol's own shape, {"error": message}, with ours under "details"."""

from __future__ import annotations

import json
import math
from typing import Any

from ... import __version__
from ...predictor import Predictor
from ...schema import CATEGORICAL, NUMERIC
from ..errors import bad_request
from ..http import HttpRequest, Reply
from ..routing import Protocol, Route
from ..service import ScoringService
from . import v2_binary
from .bodies import JSON
from .operations import readiness
from .v2_tensors import MATRIX_INPUT, InferRequest, decode, matrix_datatype

V2 = Protocol("v2", lambda exc: {"error": exc.message, "details": exc.body()["error"]}, "V2Error")
FEATURE_TYPES = {NUMERIC: "FP64", CATEGORICAL: "BYTES", "boolean": "BOOL"}
ERRORS = {"404": "no such model, or no such version of it, in the store",
          "503": "no verified model loaded: still loading, or the version is refused (the reason says which)"}


def datatype_of(values: list[Any]) -> str:
    """The v2 datatype of a list of values; metadata and infer both ask this one function."""
    first = values[0] if values else None
    if isinstance(first, str):
        return "BYTES"
    if isinstance(first, bool):
        return "BOOL"
    return "INT64" if isinstance(first, int) else "FP64"


def outputs(predictor: Predictor) -> list[tuple[str, str]]:
    if not predictor.is_classifier:
        return [("prediction", "FP64")]
    classes = list(predictor.schema.classes)
    return [("prediction", datatype_of(classes))] + [(f"proba_{c}", "FP64") for c in classes]


# --- reading a request ------------------------------------------------------------------------


# --- answering ------------------------------------------------------------------------------

def finite(value: Any) -> Any:
    """JSON has no NaN: null instead (the app does the same for JSON replies)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def infer_reply(name: str, predictor: Predictor, request: InferRequest, results: dict[str, list[Any]]) -> Reply:
    """JSON tensors, or the binary extension when any output asked for it (tritonclient's default)."""
    unknown = [n for n in request.outputs if n not in results]
    if unknown:
        raise bad_request(f"output '{unknown[0]}' is not one of {', '.join(results)}")
    chosen = {n: v for n, v in results.items() if not request.outputs or n in request.outputs}
    head: dict[str, Any] = {"model_name": name, "model_version": predictor.version, "outputs": []}
    if request.request_id:
        head["id"] = request.request_id
    raw: list[bytes] = []
    for output, values in chosen.items():
        flag = request.outputs.get(output)
        described: dict[str, Any] = {"name": output, "datatype": datatype_of(values), "shape": [len(values)]}
        if request.binary_by_default if flag is None else flag:
            raw.append(v2_binary.encode(described["datatype"], values))
            described["parameters"] = {"binary_data_size": len(raw[-1])}
        else:
            described["data"] = values
        head["outputs"].append(described)
    if not raw:
        return Reply(head, predictor=predictor)
    header = json.dumps({**head, "outputs": [{**o, "data": finite(o["data"])} if "data" in o else o for o in head["outputs"]]},
                        allow_nan=False).encode()
    return Reply(header + b"".join(raw), media_type=v2_binary.OCTETS, predictor=predictor,
                 headers={"Inference-Header-Content-Length": str(len(header))})


def server(service: ScoringService, request: HttpRequest) -> Reply:
    return Reply({"name": "mljobs", "version": __version__, "extensions": ["binary_tensor_data"]})


def live(service: ScoringService, request: HttpRequest) -> Reply:
    return Reply({"live": True})


def model_metadata(service: ScoringService, request: HttpRequest) -> Reply:
    name = request.params["name"]
    predictor = service.model(name, request.params.get("version"))
    schema = predictor.schema
    return Reply({
        "name": name, "versions": [predictor.version], "platform": "mljobs",
        "inputs": [{"name": f.name, "datatype": FEATURE_TYPES[f.kind], "shape": [-1]} for f in schema.features],
        "outputs": [{"name": n, "datatype": t, "shape": [-1]} for n, t in outputs(predictor)],
        # The other layout: one [N, F] tensor, the features in this order (MLServer reads `parameters`).
        "parameters": {"matrix_input": {"name": MATRIX_INPUT, "datatype": matrix_datatype(schema),
                                        "shape": [-1, len(schema.features)], "columns": schema.names}},
    }, predictor=predictor)


def model_ready(service: ScoringService, request: HttpRequest) -> Reply:
    name, version = request.params["name"], request.params.get("version")
    ready = service.readiness(name, version).ready
    return Reply({"name": name, "ready": ready}, 200 if ready else 503, predictor=service.registry.current(name))


def repository_index(service: ScoringService, request: HttpRequest) -> Reply:
    """Every model the store holds and whether this worker has it loaded (MLServer's and Triton's shape)."""
    return Reply([{"name": m["name"], "version": m["loaded"] or m["serves"], "state": "READY" if m["loaded"] else "UNAVAILABLE",
                   "reason": "" if m["loaded"] else "not loaded: the first request loads it"} for m in service.catalogue()])


def infer(service: ScoringService, request: HttpRequest) -> Reply:
    name = request.params["name"]
    predictor = service.model(name, request.params.get("version"))
    decoded = decode(request.body(), request.content_type, request.headers, predictor.schema)
    matrix = service.matrix(predictor, decoded.columns)
    raw = service.score_matrix(predictor, matrix)
    results = {n: c.to_pylist() for n, c in predictor.output_columns(raw, proba=True).items()}
    if decoded.explain is not None:
        explained = service.explain(predictor, matrix, decoded.explain.top_k)
        results["top_feature_attributions"] = [json.dumps(e["top_feature_attributions"]) for e in explained]
        for key in ("baseline_prediction_value", "prediction_value"):
            results[key] = [float(e[key]) for e in explained]
    return infer_reply(name, predictor, decoded, results)


METADATA_REPLY = {"200": {"description": "model metadata", "content": {JSON: {"schema": {
    "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"]}}}}}
INFER_SUMMARY = (
    "Score rows sent as one input tensor per feature ([N] or [N, 1]), or as one [N, F] input tensor with "
    "the features in the schema's order (FP32/FP64/INT*/BOOL for all-numeric models, BYTES for models "
    "with categorical features; its name and columns are in the model metadata's parameters.matrix_input). "
    "JSON tensors, or the binary tensor extension (Inference-Header-Content-Length); binary outputs when "
    "asked (binary_data, binary_data_output). MLServer's content_type parameters (pd, np, str, pd_json, base64) are honoured."
)


def infer_route(path: str) -> Route:
    return Route(
        path, "POST", infer, V2, INFER_SUMMARY,
        request={JSON: {"$ref": "#/components/schemas/V2Request"}},
        replies={"200": {"description": "a prediction tensor, and one probability tensor per class", "content": {
            JSON: {"schema": {"type": "object", "required": ["model_name", "outputs"], "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}}}}}}}},
        errors={**ERRORS, "415": "not JSON", "422": "tensors that do not fit the model; the bad fields named"},
    )


READY_REPLIES = {"200": {"description": "ready"}, "503": {"description": "not ready"}}

ROUTES = [
    Route("/v2", "GET", server, V2, "Open Inference Protocol: the server's metadata",
          replies={"200": {"description": "server metadata"}}),
    Route("/v2/health/live", "GET", live, V2, "The process is up", replies={"200": {"description": "live"}}),
    Route("/v2/health/ready", "GET", readiness, V2, "A verified model is loaded and followed", replies=READY_REPLIES),
    Route("/v2/models/<name>", "GET", model_metadata, V2, "The model's inputs and outputs", replies=METADATA_REPLY, errors=ERRORS),
    Route("/v2/models/<name>/versions/<version>", "GET", model_metadata, V2, "The model's inputs and outputs",
          replies=METADATA_REPLY, errors=ERRORS),
    Route("/v2/models/<name>/ready", "GET", model_ready, V2, "The model is loaded and followed (a ready probe loads it)",
          replies=READY_REPLIES, errors={"404": ERRORS["404"]}),
    Route("/v2/models/<name>/versions/<version>/ready", "GET", model_ready, V2, "That version is loaded",
          replies=READY_REPLIES, errors={"404": ERRORS["404"]}),
    Route("/v2/repository/index", "POST", repository_index, V2, "Every model in the store, loaded or not",
          replies={"200": {"description": "name, version, state and reason of each model"}}),
    infer_route("/v2/models/<name>/infer"),
    infer_route("/v2/models/<name>/versions/<version>/infer"),
]

COMPONENTS = {
    "V2Tensor": {"type": "object", "required": ["name", "datatype", "shape", "data"], "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string", "enum": list(v2_binary.DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}}, "data": {"type": "array"},
        "parameters": {"type": "object"}}},
    "V2Request": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/V2Tensor"}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}}}},
}
