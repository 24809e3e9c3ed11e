"""The Open Inference Protocol (KServe v2): server and model metadata, readiness, and infer with
one JSON input tensor per feature (shape [N] or [N, 1]). Errors take the protocol's own shape,
{"error": message}, with ours under "details"."""

from __future__ import annotations

from typing import Any

from ... import __version__
from ...predictor import Predictor
from ...schema import CATEGORICAL, NUMERIC
from ..http import HttpRequest, Reply
from ..routing import Protocol, Route
from ..service import Columns, ScoringService
from ..errors import ApiError, bad_request
from .bodies import JSON, columns_of, json_of, require
from .operations import readiness

V2 = Protocol("v2", lambda exc: {"error": exc.message, "details": exc.body()["error"]}, "V2Error")
FEATURE_TYPES = {NUMERIC: "FP64", CATEGORICAL: "BYTES", "boolean": "BOOL"}
ERRORS = {"404": "not the model served here", "503": "no verified model loaded yet"}


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


def tensor(name: str, values: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype_of(values), "shape": [len(values)], "data": values}


def decode(body: bytes, content_type: str, headers: Any) -> tuple[Columns, str | None]:
    """The body is JSON whether or not a content type says so (v2 clients often send none)."""
    require(content_type, (JSON, ""))
    if "inference-header-content-length" in headers:
        raise bad_request("binary tensor data (a Triton extension) is not supported: send JSON tensors (binary_data=False)")
    payload = json_of(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise bad_request("send {\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}, ...]}, one input per feature")
    columns: dict[str, Any] = {}
    for item in payload["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("data"), list):
            raise bad_request("each input needs a 'name' and a 'data' list")
        data = item["data"]
        if data and all(isinstance(v, list) and len(v) == 1 for v in data):  # shape [N, 1]
            data = [v[0] for v in data]
        columns[item["name"]] = data
    request_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    return columns_of(columns, "inputs"), request_id


def server(service: ScoringService, request: HttpRequest) -> Reply:
    return Reply({"name": "mljobs", "version": __version__, "extensions": []})


def live(service: ScoringService, request: HttpRequest) -> Reply:
    return Reply({"live": True})


def model_metadata(service: ScoringService, request: HttpRequest) -> Reply:
    name = request.params["name"]
    predictor = service.model(name)
    return Reply({
        "name": name, "versions": [predictor.version], "platform": "mljobs",
        "inputs": [{"name": f.name, "datatype": FEATURE_TYPES[f.kind], "shape": [-1]} for f in predictor.schema.features],
        "outputs": [{"name": n, "datatype": t, "shape": [-1]} for n, t in outputs(predictor)],
    }, predictor=predictor)


def model_ready(service: ScoringService, request: HttpRequest) -> Reply:
    name = request.params["name"]
    if name != service.ref.name:
        raise ApiError(404, "not_found", f"model '{name}' is not served here (this server serves '{service.ref.name}')")
    ready = service.readiness().ready
    return Reply({"name": name, "ready": ready}, 200 if ready else 503, predictor=service.holder.predictor)


def infer(service: ScoringService, request: HttpRequest) -> Reply:
    name = request.params["name"]
    predictor = service.model(name)
    columns, request_id = decode(request.body(), request.content_type, request.headers)
    raw = service.score(predictor, columns)
    reply: dict[str, Any] = {
        "model_name": name, "model_version": predictor.version,
        "outputs": [tensor(n, c.to_pylist()) for n, c in predictor.output_columns(raw, proba=True).items()],
    }
    if request_id:
        reply["id"] = request_id
    return Reply(reply, predictor=predictor)


METADATA_REPLY = {"200": {"description": "model metadata", "content": {JSON: {"schema": {
    "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"]}}}}}


def infer_route(path: str) -> Route:
    return Route(
        path, "POST", infer, V2, "One input tensor per feature, JSON tensors",
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
    Route("/v2/models/<name>/ready", "GET", model_ready, V2, "The model is loaded and followed",
          replies=READY_REPLIES, errors={"404": ERRORS["404"]}),
    infer_route("/v2/models/<name>/infer"),
    infer_route("/v2/models/<name>/versions/<version>/infer"),
]

COMPONENTS = {
    "V2Tensor": {"type": "object", "required": ["name", "datatype", "shape", "data"], "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string", "enum": ["BOOL", "INT64", "FP64", "BYTES"]},
        "shape": {"type": "array", "items": {"type": "integer"}}, "data": {"type": "array"}}},
    "V2Request": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/V2Tensor"}}}},
}
