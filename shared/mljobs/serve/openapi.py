"""The OpenAPI document, generated from the route table (every route, with its protocol's error
shape), with the record schema taken from the served model."""

from __future__ import annotations

import re
from typing import Any, Iterable

from ..schema import BOOLEAN, CATEGORICAL, FeatureSchema
from .routing import Route

ERROR_DETAILS: dict[str, Any] = {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "fields": {"type": "array", "maxItems": 100, "items": {
                "type": "object", "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}, "row": {"type": "integer"}},
            }},
            "field_count": {"type": "integer", "description": "how many fields were bad in all (only the first 100 are listed)"},
        },
}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": ERROR_DETAILS}}
BODY_ERRORS = {"400": "malformed body", "413": "body too large"}
PREDICTIONS = {"type": "object", "required": ["model", "predictions"], "properties": {
    "model": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
    "predictions": {"type": "array", "items": {"type": "object", "required": ["prediction"], "properties": {
        "prediction": {},
        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
    }}},
}}


def feature_schema(kind: str, categories: tuple[str, ...]) -> dict[str, Any]:
    if kind == CATEGORICAL:
        return {"type": "string", "nullable": True, "example": categories[0] if categories else "a"}
    if kind == BOOLEAN:
        return {"type": "boolean", "nullable": True}
    return {"type": "number", "nullable": True}


def openapi_path(path: str) -> tuple[str, list[str]]:
    """Flask's /v2/models/<name> as OpenAPI's /v2/models/{name}, with the parameter names."""
    names = re.findall(r"<(?:\w+:)?(\w+)>", path)
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path), names


def operation(route: Route) -> dict[str, Any]:
    _, names = openapi_path(route.path)
    errors = {**(BODY_ERRORS if route.request else {}), **route.errors}
    shape = {"$ref": f"#/components/schemas/{route.protocol.error_schema}"}
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": re.sub(r"\W+", "_", route.endpoint).strip("_"),
        "responses": {**route.replies, **{code: {"description": text, "content": {"application/json": {"schema": shape}}}
                                          for code, text in sorted(errors.items())}},
    }
    parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
    parameters += [{"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d} for n, t, d in route.query]
    if parameters:
        op["parameters"] = parameters
    if route.request:
        op["requestBody"] = {"required": True, "content": {t: {"schema": s} for t, s in route.request.items()}}
    return op


def document(routes: Iterable[Route], name: str, schema: FeatureSchema | None, components: dict[str, Any]) -> dict[str, Any]:
    features = schema.features if schema else ()
    record = {
        "type": "object",
        "required": [f.name for f in features],
        "properties": {f.name: feature_schema(f.kind, f.categories) for f in features},
    }
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path, _ = openapi_path(route.path)
        paths.setdefault(path, {})[route.method.lower()] = operation(route)
    return {
        "openapi": "3.0.3",
        "info": {"title": f"mljobs scoring API: {name}", "version": "1"},
        "paths": paths,
        "components": {"schemas": {
            "Record": record,
            "Predictions": PREDICTIONS,
            "Error": ERROR,
            "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "details": ERROR_DETAILS}},
            **components,
        }},
    }
