"""SageMaker's inference contract (which MLflow's scoring server shares at /invocations): CSV
without a header, MLflow's JSON shapes or JSON Lines in; JSON, CSV or JSON Lines out, as `Accept`
asks. Under batch transform (SAGEMAKER_BATCH) a CSV or JSON Lines request is answered in its own
format by default, and a reply has no final newline: SageMaker adds one between the replies it
joins (AssembleWith=Line), so each input line gets exactly one output line."""

from __future__ import annotations

import json
import os
from typing import Any

from ...cpus import usable_cpus
from ...schema import FeatureSchema
from ..errors import bad_request
from ..http import HttpRequest, Reply
from ..routing import MLJOBS, Route
from ..service import Columns, ScoringService
from . import mlflow
from .bodies import CSV, JSON, Record, json_of, require, rows_to_records
from .native import SCORING_ERRORS

JSONLINES = "application/jsonlines"
STRATEGIES = {"MULTI_RECORD": "MultiRecord", "SINGLE_RECORD": "SingleRecord"}  # variable -> API spelling
DEFAULT_PAYLOAD_MB = 6  # SageMaker's own default


def batch_mode() -> bool:
    return os.environ.get("SAGEMAKER_BATCH", "").lower() == "true"


def jsonlines_records(body: bytes, schema: FeatureSchema) -> list[Record]:
    """One record per line: an object, or a list of values in the schema's order."""
    records: list[Record] = []
    for i, line in enumerate(l for l in body.splitlines() if l.strip()):
        value = json_of(line)
        if isinstance(value, dict):
            records.append(value)
        elif isinstance(value, list):
            records += rows_to_records([value], schema.names, f"JSON Lines line {i}")
        else:
            raise bad_request(f"JSON Lines line {i} is neither an object nor a list of values")
    if not records:
        raise bad_request("the JSON Lines body has no records")
    return records


def decode(body: bytes, content_type: str, schema: FeatureSchema) -> list[Record] | Columns:
    require(content_type, (JSON, CSV, JSONLINES))
    if content_type == JSONLINES:
        return jsonlines_records(body, schema)
    return mlflow.decode(body, content_type, schema)


def lines(text: str) -> str:
    """Lines as they are; without the last newline under batch transform, which adds it."""
    return text[:-1] if batch_mode() and text.endswith("\n") else text


TARGET_MODEL = "x-amzn-sagemaker-target-model"  # a multi-model endpoint's choice of model


def target_model(request: HttpRequest) -> str | None:
    """The model a request names: in its path, else in SageMaker's multi-model header
    ("churn", or the artifact's name, "churn.tar.gz"), else none (the default model)."""
    if "name" in request.params:
        return request.params["name"]
    target = request.headers.get(TARGET_MODEL)
    if not target:
        return None
    name = target.rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz"):
        name = name.removesuffix(suffix)
    return name


def invocations(service: ScoringService, request: HttpRequest) -> Reply:
    predictor = service.model(target_model(request))
    raw = service.score(predictor, decode(request.body(), request.content_type, predictor.schema))
    values: list[Any] = predictor.labels(raw) if predictor.is_classifier else raw.tolist()
    own = request.content_type if batch_mode() and request.content_type in (CSV, JSONLINES) else JSON
    accept = request.best_accept([own, *(t for t in (JSON, CSV, JSONLINES) if t != own)])
    if accept == CSV:
        return Reply(lines(mlflow.csv_reply(values)), media_type=CSV, predictor=predictor)
    if accept == JSONLINES:
        text = "".join(json.dumps({"prediction": v}, allow_nan=False) + "\n" for v in values)
        return Reply(lines(text), media_type=JSONLINES, predictor=predictor)
    return Reply({"predictions": values}, predictor=predictor)


def execution_parameters(service: ScoringService, request: HttpRequest) -> Reply:
    """What batch transform asks before it sends data (spelled as SageMaker's API spells it)."""
    workers = int(os.environ.get("MLJOBS_WORKERS") or min(4, usable_cpus()))
    threads = int(os.environ.get("MLJOBS_THREADS") or 1)
    payload = os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "")
    return Reply({
        "MaxConcurrentTransforms": workers * threads,
        "BatchStrategy": STRATEGIES.get(os.environ.get("SAGEMAKER_BATCH_STRATEGY", ""), "MultiRecord"),
        "MaxPayloadInMB": int(payload) if payload.isdigit() and int(payload) > 0 else DEFAULT_PAYLOAD_MB,
    })


INVOCATIONS_BODY = {JSON: {"$ref": "#/components/schemas/MlflowRequest"}, CSV: {"type": "string"}, JSONLINES: {"type": "string"}}
INVOCATIONS_REPLY = {"200": {"description": "one prediction per record", "content": {
    JSON: {"schema": {"type": "object", "required": ["predictions"], "properties": {"predictions": {"type": "array"}}}},
    CSV: {"schema": {"type": "string"}}, JSONLINES: {"schema": {"type": "string"}}}}}
NAMED_MODEL_ERRORS = {**SCORING_ERRORS, "404": "no such model in the store"}

ROUTES = [
    Route("/invocations", "POST", invocations, MLJOBS,
          "SageMaker's and MLflow's scoring protocol: predictions only, labels for classifiers; the default model, "
          "or the one X-Amzn-SageMaker-Target-Model names",
          request=INVOCATIONS_BODY, replies=INVOCATIONS_REPLY,
          errors={**SCORING_ERRORS, "404": "X-Amzn-SageMaker-Target-Model names no model in the store"}),
    Route("/models/<name>/invocations", "POST", invocations, MLJOBS, "SageMaker's and MLflow's scoring protocol, the named model",
          request=INVOCATIONS_BODY, replies=INVOCATIONS_REPLY, errors=NAMED_MODEL_ERRORS),
    Route("/execution-parameters", "GET", execution_parameters, MLJOBS,
          "SageMaker batch transform's settings: MaxConcurrentTransforms, BatchStrategy, MaxPayloadInMB",
          replies={"200": {"description": "the settings", "content": {JSON: {"schema": {"type": "object"}}}}}),
]
