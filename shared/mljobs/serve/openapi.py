"""The OpenAPI document of the scoring API (native, MLflow/SageMaker, Open Inference), with the
record schema taken from the served model."""

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


V2_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "the served model's name"}


def feature_schema(kind: str, categories: tuple[str, ...]) -> dict[str, Any]:
    if kind == CATEGORICAL:
        return {"type": "string", "nullable": True, "example": categories[0] if categories else "a"}
    if kind == BOOLEAN:
        return {"type": "boolean", "nullable": True}
    return {"type": "number", "nullable": True}


def error_responses(shape: str, particular: dict[str, str]) -> dict[str, Any]:
    """The error statuses of a route, each answered in the `shape` schema (ours, or the v2 one)."""
    texts = {"400": "malformed body", "413": "body too large", **particular, "503": "no verified model loaded yet"}
    return {code: {"description": text, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}}}
            for code, text in sorted(texts.items())}


def document(name: str, schema: FeatureSchema | None) -> dict[str, Any]:
    features = schema.features if schema else ()
    record = {
        "type": "object",
        "required": [f.name for f in features],
        "properties": {f.name: feature_schema(f.kind, f.categories) for f in features},
    }
    errors = error_responses("Error", {"415": "not JSON or CSV, or not UTF-8",
                                       "422": "records that do not fit the model; every bad field named"})
    v2_errors = error_responses("V2Error", {"404": "not the model served here", "415": "not JSON",
                                            "422": "tensors that do not fit the model; every bad field named"})
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
            "/invocations": {"post": {
                "summary": "MLflow's scoring protocol (also SageMaker's): predictions only, labels for classifiers",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/MlflowRequest"}},
                    "text/csv": {"schema": {"type": "string"}},
                }},
                "responses": {"200": {"description": "one prediction per record", "content": {
                    "application/json": {"schema": {"type": "object", "required": ["predictions"], "properties": {
                        "predictions": {"type": "array"}}}},
                    "text/csv": {"schema": {"type": "string"}},
                }}, **errors},
            }},
            "/v2/models/{name}": {"get": {
                "summary": "Open Inference Protocol (KServe v2): the model's inputs and outputs",
                "parameters": [V2_NAME],
                "responses": {"200": {"description": "model metadata", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"]}}}},
                    **v2_errors},
            }},
            "/v2/models/{name}/infer": {"post": {
                "summary": "Open Inference Protocol (KServe v2): one input tensor per feature, JSON tensors",
                "parameters": [V2_NAME],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/V2Request"}}}},
                "responses": {"200": {"description": "a prediction tensor, and one probability tensor per class", "content": {
                    "application/json": {"schema": {"type": "object", "required": ["model_name", "outputs"], "properties": {
                        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                        "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}}}}}}},
                    **v2_errors},
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
            "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "details": ERROR["properties"]["error"]}},
            "MlflowRequest": {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": {
                "dataframe_split": {"type": "object", "required": ["columns", "data"], "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}}, "data": {"type": "array", "items": {"type": "array"}}}},
                "dataframe_records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                "inputs": {"type": "object", "description": "columns: feature name -> list of values"},
            }},
            "V2Tensor": {"type": "object", "required": ["name", "datatype", "shape", "data"], "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string", "enum": ["BOOL", "INT64", "FP64", "BYTES"]},
                "shape": {"type": "array", "items": {"type": "integer"}}, "data": {"type": "array"}}},
            "V2Request": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"},
                "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/V2Tensor"}}}},
        }},
    }
