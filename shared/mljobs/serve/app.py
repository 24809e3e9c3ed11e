"""The Flask app factory: `gunicorn 'mljobs.serve.app:create_app()'`.

Routes are thin adapters: protocols.py turns bodies into records, the featurizer and model do
the rest, and errors.py gives every failure one JSON shape.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import time
from typing import Any, Mapping

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .. import __version__
from ..errors import InvalidRecordsError
from ..predictor import Predictor
from ..store import ModelRef, ModelStore
from . import openapi, protocols
from .errors import ApiError
from .holder import Health, ModelHolder
from .metrics import ServerMetrics

log = logging.getLogger("mljobs.serve")

DEFAULTS = {
    "MODELS_DIR": "/models",
    "MODEL": "demo",
    "POLL_SECONDS": "2",
    "MAX_BODY_BYTES": str(8 * 1024 * 1024),
}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(_finite(payload), allow_nan=False), status=status, mimetype="application/json", headers=headers)


def settings_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ.get(f"MLJOBS_{k}", v) for k, v in DEFAULTS.items()}


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    settings = {**settings_from_env(os.environ), **(config or {})}
    app = Flask("mljobs.serve")
    app.config["MAX_CONTENT_LENGTH"] = int(settings["MAX_BODY_BYTES"])
    metrics = ServerMetrics()
    ref = ModelRef.parse(settings["MODEL"])
    holder = ModelHolder(ModelStore(settings["MODELS_DIR"]), ref, metrics, float(settings["POLL_SECONDS"]))
    holder.refresh()
    holder.start_following()
    gc.freeze()  # the model is loaded: keep its objects out of later collections (p99 spikes)
    app.extensions["mljobs.holder"] = holder

    def ready() -> Predictor:
        predictor = holder.predictor
        if predictor is None:
            raise ApiError(503, "model_unavailable", holder.last_error or "the model is still loading")
        return predictor

    def score(predictor: Predictor, records: list[Any]) -> Any:
        """One request, one model version: the caller took `predictor` once, before parsing."""
        try:
            matrix = predictor.featurizer.transform_records(records)
        except InvalidRecordsError as exc:
            raise ApiError.invalid_records(exc) from None
        raw = predictor.predict_raw(matrix, threads=1)  # one thread per worker: OpenMP and fork do not mix
        metrics.predictions.inc(len(records))
        return raw

    def answered_by(predictor: Predictor) -> dict[str, str]:
        return {"X-Model-Name": predictor.name, "X-Model-Version": predictor.version}

    def body() -> bytes:
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
            return request.get_data(cache=False)  # Werkzeug answers 413 to a Content-Length over the limit
        # A chunked body: Werkzeug would cut it at the limit without a word, so read one byte past.
        stream, parts, size = request.environ["wsgi.input"], [], 0
        while size <= limit:
            part = stream.read(limit + 1 - size)
            if not part:
                return b"".join(parts)
            parts.append(part)
            size += len(part)
        raise ApiError(413, "request_entity_too_large", f"the body is over the {limit}-byte limit")

    # --- health and description ------------------------------------------------------------

    @app.get("/v2/health/live")
    def live() -> Response:
        return json_response({"live": True})

    @app.get("/ping")
    @app.get("/health")
    @app.get("/v2/health/ready")
    def ready_probe() -> Response:
        if holder.health is Health.READY:
            return json_response({"ready": True, "status": "ready"})
        return json_response({"ready": False, "status": holder.health.value, "reason": holder.last_error}, 503)

    @app.get("/version")
    def version() -> Response:
        predictor = holder.predictor
        return json_response({"mljobs": __version__, "model": {"name": ref.name, "version": predictor.version if predictor else None}})

    @app.get("/metadata")
    def metadata() -> Response:
        predictor = ready()
        return json_response({
            "model": {"name": predictor.name, "version": predictor.version},
            "schema": json.loads(predictor.schema.to_json()),
            "metrics": predictor.metadata.get("metrics", {}),
        }, headers=answered_by(predictor))

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        predictor = holder.predictor
        return json_response(openapi.document(ref.name, predictor.schema if predictor else None))

    @app.get("/metrics")
    def prometheus() -> Response:
        data, content_type = metrics.exposition()
        return Response(data, content_type=content_type)

    # --- scoring ----------------------------------------------------------------------------

    @app.post("/predict")
    def predict() -> Response:
        predictor = ready()
        raw = score(predictor, protocols.native_request(body(), request.mimetype, predictor.schema))
        return json_response({"model": {"name": predictor.name, "version": predictor.version},
                              "predictions": predictor.output_records(raw)}, headers=answered_by(predictor))

    @app.post("/invocations")
    def invocations() -> Response:
        """MLflow's scoring protocol, which SageMaker's /invocations also speaks."""
        predictor = ready()
        raw = score(predictor, protocols.mlflow_request(body(), request.mimetype, predictor.schema))
        values = predictor.labels(raw) if predictor.is_classifier else raw.tolist()
        if request.accept_mimetypes.best == protocols.CSV:
            return Response(protocols.csv_reply(values), mimetype=protocols.CSV, headers=answered_by(predictor))
        return json_response(protocols.mlflow_reply(values), headers=answered_by(predictor))

    # --- Open Inference Protocol (KServe v2) --------------------------------------------------

    def v2_model(name: str) -> Predictor:
        if name != ref.name:
            raise ApiError(404, "not_found", f"model '{name}' is not served here (this server serves '{ref.name}')")
        return ready()

    def v2_outputs(predictor: Predictor) -> list[tuple[str, str]]:
        if not predictor.is_classifier:
            return [("prediction", "FP64")]
        label = "BYTES" if isinstance(predictor.schema.classes[0], str) else "INT64"
        return [("prediction", label)] + [(f"proba_{c}", "FP64") for c in predictor.schema.classes]

    @app.get("/v2")
    def v2_server() -> Response:
        return json_response({"name": "mljobs", "version": __version__, "extensions": []})

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
    def v2_metadata(name: str, version: str | None = None) -> Response:
        predictor = v2_model(name)
        return json_response(protocols.v2_metadata(name, predictor.version, predictor.schema, v2_outputs(predictor)))

    @app.get("/v2/models/<name>/ready")
    def v2_ready(name: str) -> Response:
        if name != ref.name or holder.predictor is None:
            return json_response({"name": name, "ready": False}, 503 if name == ref.name else 404)
        return json_response({"name": name, "ready": True})

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<version>/infer")
    def v2_infer(name: str, version: str | None = None) -> Response:
        predictor = v2_model(name)
        binary = "Inference-Header-Content-Length" in request.headers
        records, request_id = protocols.v2_request(body(), request.mimetype, binary)
        raw = score(predictor, records)
        columns = predictor.output_columns(raw, proba=True)
        reply = {
            "model_name": name, "model_version": predictor.version,
            "outputs": [protocols.v2_tensor(n, c.to_pylist()) for n, c in columns.items()],
        }
        if request_id:
            reply["id"] = request_id
        return json_response(reply, headers=answered_by(predictor))

    # --- errors and accounting -----------------------------------------------------------------

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        if request.path.startswith("/v2/"):  # the v2 protocol's own error shape
            return json_response({"error": exc.message, "details": exc.body()["error"]}, exc.status)
        return json_response(exc.body(), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        return api_error(ApiError(exc.code or 500, code, exc.description or exc.name))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")  # the trace goes to the log, never to the client
        return api_error(ApiError(500, "internal_error", "the server failed to answer; see its log"))

    @app.before_request
    def start_timer() -> None:
        request.environ["mljobs.start"] = time.perf_counter()

    @app.after_request
    def account(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - request.environ.get("mljobs.start", time.perf_counter()))
        return response

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


