"""The route table: every protocol's routes, plus the OpenAPI document generated from them."""

from __future__ import annotations

from .http import HttpRequest, Reply
from .openapi import document
from .protocols import mlflow, native, operations, v2
from .protocols import ui
from .protocols import sagemaker
from .routing import MLJOBS, Route
from .service import ScoringService

COMPONENTS = {**mlflow.COMPONENTS, **v2.COMPONENTS}


def openapi_document(service: ScoringService, request: HttpRequest) -> Reply:
    predictor = service.holder.predictor
    return Reply(document(ROUTES, service.ref.name, predictor.schema if predictor else None, COMPONENTS))


ROUTES: list[Route] = [
    *native.ROUTES,
    *sagemaker.ROUTES,  # /invocations (MLflow's too) and /execution-parameters
    *v2.ROUTES,
    *operations.ROUTES,
    *ui.ROUTES,
    Route("/openapi.json", "GET", openapi_document, MLJOBS, "This document", replies={"200": {"description": "OpenAPI 3.0"}}),
]
