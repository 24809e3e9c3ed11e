"""The OpenAPI document of the native API, with the record schema taken from the served model."""

from __future__ import annotations

from typing import Any

from ..schema import BOOLEAN, CATEGORICAL, FeatureSchema

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "fields": {"type": "array", "items": {
                "type": "object", "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}, "row": {"type": "integer"}},
            }},
        },
    }},
}


def feature_schema(kind: str, categories: tuple[str, ...]) -> dict[str, Any]:
    if kind == CATEGORICAL:
        return {"type": "string", "nullable": True, "example": categories[0] if categories else "a"}
    if kind == BOOLEAN:
        return {"type": "boolean", "nullable": True}
    return {"type": "number", "nullable": True}


def document(name: str, schema: FeatureSchema | None) -> dict[str, Any]:
    features = schema.features if schema else ()
    record = {
        "type": "object",
        "required": [f.name for f in features],
        "properties": {f.name: feature_schema(f.kind, f.categories) for f in features},
    }
    errors = {code: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
              for code, text in (("400", "malformed body"), ("413", "body too large"), ("415", "not JSON or CSV, or not UTF-8"),
                                 ("422", "records that do not fit the model; every bad field named"),
                                 ("503", "no verified model loaded yet"))}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"mljobs scoring API: {name}", "version": "1"},
        "paths": {
            "/predict": {"post": {
                "summary": "Score one record or a list of records",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Record"},
                        {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Record"}},
                    ]}},
                    "text/csv": {"schema": {"type": "string"}},
                }},
                "responses": {"200": {"description": "one prediction per record", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Predictions"}}}}, **errors},
            }},
            "/v2/health/live": {"get": {"summary": "The process is up", "responses": {"200": {"description": "live"}}}},
            "/v2/health/ready": {"get": {"summary": "A verified model is loaded", "responses": {
                "200": {"description": "ready"}, "503": {"description": "not ready"}}}},
        },
        "components": {"schemas": {
            "Record": record,
            "Predictions": {"type": "object", "required": ["model", "predictions"], "properties": {
                "model": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}}},
                "predictions": {"type": "array", "items": {"type": "object", "required": ["prediction"], "properties": {
                    "prediction": {},
                    "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
                }}},
            }},
            "Error": ERROR,
        }},
    }
