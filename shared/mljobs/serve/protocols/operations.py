"""Operations routes: readiness (one answer for every probe), the version, the model's metadata
and the Prometheus metrics."""

from __future__ import annotations

import json

from ... import __version__
from ..http import HttpRequest, Reply
from ..routing import MLJOBS, Route
from ..service import ScoringService


def readiness(service: ScoringService, request: HttpRequest) -> Reply:
    state = service.readiness()
    if state.ready:
        return Reply({"ready": True, "status": state.state.value}, predictor=service.holder.predictor)
    return Reply({"ready": False, "status": state.state.value, "reason": state.reason}, 503, predictor=service.holder.predictor)


def version(service: ScoringService, request: HttpRequest) -> Reply:
    predictor = service.holder.predictor
    return Reply({"mljobs": __version__, "model": {"name": service.ref.name, "version": predictor.version if predictor else None}},
                 predictor=predictor)


def metadata(service: ScoringService, request: HttpRequest) -> Reply:
    predictor = service.model(request.params.get("name"))
    return Reply({
        "model": {"name": predictor.name, "version": predictor.version},
        "schema": json.loads(predictor.schema.to_json()),
        "metrics": predictor.metadata.get("metrics", {}),
        "feature_importance": predictor.feature_importance(),
    }, predictor=predictor)


def metrics(service: ScoringService, request: HttpRequest) -> Reply:
    data, content_type = service.metrics.exposition()
    return Reply(data, media_type=content_type)


READY = {"200": {"description": "ready"}, "503": {"description": "not ready: the reason says why"}}

ROUTES = [
    Route("/ping", "GET", readiness, MLJOBS, "Ready to score (SageMaker's and MLflow's probe)", replies=READY),
    Route("/health", "GET", readiness, MLJOBS, "Ready to score (MLflow's probe)", replies=READY),
    Route("/version", "GET", version, MLJOBS, "mljobs' version and the model version served",
          replies={"200": {"description": "versions"}}),
    Route("/metadata", "GET", metadata, MLJOBS, "The default model's schema, held-out metrics and feature importance",
          replies={"200": {"description": "schema, metrics, importance"}}, errors={"503": "no verified model loaded yet"}),
    Route("/models/<name>/metadata", "GET", metadata, MLJOBS, "The named model's schema, held-out metrics and feature importance",
          replies={"200": {"description": "schema, metrics, importance"}},
          errors={"404": "no such model in the store", "503": "no verified model loaded yet"}),
    Route("/metrics", "GET", metrics, MLJOBS, "Prometheus metrics",
          replies={"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}),
]
