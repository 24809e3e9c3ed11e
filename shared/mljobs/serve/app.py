"""The Flask app factory: `gunicorn 'mljobs.serve.app:create_app()'`.

Flask lives here only: each route of the table (routes.py) becomes a view that hands a plain
HttpRequest to its protocol's handler and turns the Reply, or the ApiError, into a response in
that protocol's shape. The handlers call one scoring service (service.py).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import time
from typing import Any, Callable, Mapping, cast

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, NotFound

from ..contract import MAX_MODEL_MB, MAX_MODELS
from ..predictor import Predictor
from ..signing import signing_key
from ..store import ModelRef, ModelStore, store_location
from .errors import ApiError
from .http import HttpRequest, Reply
from .metrics import ServerMetrics
from .protocols.v2 import V2
from .registry import ModelRegistry
from .routes import ROUTES
from .routing import MLJOBS, Protocol, Route
from .service import ScoringService

log = logging.getLogger("mljobs.serve")

DEFAULTS = {
    "MODELS_DIR": "/models",
    "STORE": "",  # a folder or s3://bucket/prefix; wins over MODELS_DIR
    "MODEL": "demo",
    "POLL_SECONDS": "2",
    "STALE_SECONDS": "",  # not ready when the alias has not been followed for this long (default: max(30, 10 polls))
    "MAX_BODY_BYTES": str(8 * 1024 * 1024),
    "MAX_MODELS": MAX_MODELS.default,  # models a worker keeps loaded; the least recently used is unloaded past it
    "MAX_MODEL_MB": MAX_MODEL_MB.default,  # and past this many MB of model files, when set
}


def settings_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ.get(f"MLJOBS_{k}", v) for k, v in DEFAULTS.items()}


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    settings = {**settings_from_env(os.environ), **(config or {})}
    app = Flask("mljobs.serve")
    app.config["MAX_CONTENT_LENGTH"] = int(settings["MAX_BODY_BYTES"])
    metrics = ServerMetrics()
    stale = float(settings["STALE_SECONDS"]) if settings["STALE_SECONDS"] else None
    store = ModelStore(store_location(settings["MODELS_DIR"], settings["STORE"] or None), signing_key())
    registry = ModelRegistry(store, ModelRef.parse(settings["MODEL"]), metrics, float(settings["POLL_SECONDS"]), stale,
                             max_models=int(settings["MAX_MODELS"]),
                             max_bytes=int(float(settings["MAX_MODEL_MB"]) * 2**20) if settings["MAX_MODEL_MB"] else None)
    registry.start()
    gc.freeze()  # the model is loaded: keep its objects out of later collections (p99 spikes)
    holder = registry.default
    app.extensions["mljobs.holder"], app.extensions["mljobs.registry"] = holder, registry
    service = ScoringService(registry, metrics)

    def respond(reply: Reply, params: Mapping[str, str] | None = None) -> Response:
        # Unless a handler says which version answered: the named model's loaded one, else the default's.
        answered = reply.predictor or (registry.current(params["name"], params.get("version")) if params and "name" in params
                                       else holder.predictor)
        headers = {**answered_by(answered), **reply.headers}
        if reply.media_type == "application/json":
            return Response(json.dumps(_finite(reply.payload), allow_nan=False), reply.status, headers, mimetype=reply.media_type)
        return Response(reply.payload, reply.status, headers, content_type=reply.media_type)

    def error_reply(exc: ApiError, protocol: Protocol, params: Mapping[str, str] | None = None) -> Response:
        return respond(Reply(protocol.error_body(exc), exc.status), params)

    def view(route: Route) -> Callable[..., Response]:
        def handle(**params: str) -> Response:
            try:
                return respond(route.handler(service, http_request(app, params)), params)
            except ApiError as exc:
                return error_reply(exc, route.protocol, params)

        return handle

    for route in ROUTES:
        app.add_url_rule(route.path, route.endpoint, view(route), methods=[route.method])
    protocols = {route.endpoint: route.protocol for route in ROUTES}

    def protocol_of_request() -> Protocol:
        if request.url_rule is not None and request.url_rule.endpoint in protocols:
            return protocols[request.url_rule.endpoint]
        return V2 if request.path.startswith("/v2/") else MLJOBS  # no route matched: the path's family

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description if not isinstance(exc, NotFound) else f"no route {request.method} {request.path}"
        return error_reply(ApiError(exc.code or 500, code, message or exc.name), protocol_of_request())

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")  # the trace goes to the log, never to the client
        return error_reply(ApiError(500, "internal_error", "the server failed to answer; see its log"), protocol_of_request())

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


def answered_by(predictor: Predictor | None) -> dict[str, str]:
    return {"X-Model-Name": predictor.name, "X-Model-Version": predictor.version} if predictor else {}


def http_request(app: Flask, params: Mapping[str, str]) -> HttpRequest:
    """Flask's request as the plain data the protocol handlers take."""
    return HttpRequest(
        content_type=request.mimetype, headers=cast(Mapping[str, str], request.headers), params=dict(params),
        read_query=lambda: cast(Mapping[str, str], request.args),
        read_body=lambda: read_body(app.config["MAX_CONTENT_LENGTH"]),
        best_accept=lambda offered: request.accept_mimetypes.best_match(offered, default=offered[0]),
    )


def read_body(limit: int) -> bytes:
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)  # Werkzeug answers 413 to a Content-Length over the limit
    # A chunked body: Werkzeug would cut it at the limit without a word, so read one byte past.
    stream, parts, size = request.environ["wsgi.input"], list[bytes](), 0
    while size <= limit:
        part = stream.read(limit + 1 - size)
        if not part:
            return b"".join(parts)
        parts.append(part)
        size += len(part)
    raise ApiError(413, "request_entity_too_large", f"the body is over the {limit}-byte limit")


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: send null instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
