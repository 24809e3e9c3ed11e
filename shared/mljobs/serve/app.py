"""The Flask app factory: `gunicorn 'mljobs.serve.app:create_app()'`."""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Mapping

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from ..errors import InvalidRecordsError
from ..store import ModelRef, ModelStore
from .holder import Health, ModelHolder

log = logging.getLogger("mljobs.serve")

DEFAULTS = {
    "MODELS_DIR": "/models",
    "MODEL": "demo",
    "POLL_SECONDS": "2",
    "MAX_BODY_BYTES": str(8 * 1024 * 1024),
}


class ApiError(Exception):
    """An error a client caused or should know about; becomes a JSON body of one stable shape."""

    def __init__(self, status: int, code: str, message: str, fields: list[dict] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, allow_nan=False), status=status, mimetype="application/json")


def settings_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ.get(f"MLJOBS_{k}", v) for k, v in DEFAULTS.items()}


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    settings = {**settings_from_env(os.environ), **(config or {})}
    app = Flask("mljobs.serve")
    app.config["MAX_CONTENT_LENGTH"] = int(settings["MAX_BODY_BYTES"])
    holder = ModelHolder(
        ModelStore(settings["MODELS_DIR"]), ModelRef.parse(settings["MODEL"]), float(settings["POLL_SECONDS"])
    )
    holder.refresh()
    holder.start_following()
    app.extensions["mljobs.holder"] = holder

    def ready_predictor():
        predictor = holder.predictor
        if predictor is None:
            raise ApiError(503, "model_unavailable", holder.last_error or "the model is still loading")
        return predictor

    def parse_json_body() -> Any:
        if request.mimetype != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the records as application/json")
        try:
            return json.loads(request.get_data(cache=False).decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError(415, "unsupported_media_type", "the body is not UTF-8") from None
        except ValueError as exc:
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None

    @app.get("/ping")
    @app.get("/health")
    @app.get("/v2/health/ready")
    def ready() -> Response:
        if holder.health is Health.READY:
            return json_response({"status": "ready"})
        return json_response({"status": holder.health.value, "reason": holder.last_error}, 503)

    @app.get("/v2/health/live")
    def live() -> Response:
        return json_response({"status": "live"})

    @app.get("/metadata")
    def metadata() -> Response:
        predictor = ready_predictor()
        return json_response(
            {
                "model": {"name": predictor.name, "version": predictor.version},
                "schema": json.loads(predictor.schema.to_json()),
                "metrics": predictor.metadata.get("metrics", {}),
            }
        )

    @app.post("/predict")
    def predict() -> Response:
        predictor = ready_predictor()
        body = parse_json_body()
        records = body if isinstance(body, list) else [body]
        if not records:
            raise ApiError(400, "invalid_input", "send one record object or a non-empty list of them")
        try:
            matrix = predictor.featurizer.transform_records(records)
        except InvalidRecordsError as exc:
            raise ApiError(422, "invalid_input", str(exc), [e.as_dict() for e in exc.errors]) from None
        raw = predictor.predict_raw(matrix, threads=1)
        return json_response(
            {
                "model": {"name": predictor.name, "version": predictor.version},
                "predictions": _finite(predictor.output_records(raw)),
            }
        )

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return json_response(exc.body(), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        return json_response(ApiError(exc.code or 500, code, exc.description or exc.name).body(), exc.code or 500)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")  # the trace goes to the log, never to the client
        return json_response(ApiError(500, "internal_error", "the server failed to answer; see its log").body(), 500)

    return app


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: send null instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
