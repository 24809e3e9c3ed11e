"""mljobs' own protocol: POST /predict (the default model) or /models/<name>/predict with one
record or a list of them (JSON or CSV); the reply names the model and gives each prediction with
its class probabilities, and with ?explain=true[&top_k=K] its feature attributions. GET /models
lists every model the store holds."""

from __future__ import annotations

from ..http import HttpRequest, Reply
from ..routing import MLJOBS, Route
from ..service import ScoringService
from .bodies import CSV, JSON, csv_records, json_of, records_of, require
from .explaining import explain_asked

SCORING_ERRORS = {"415": "not JSON or CSV, or not UTF-8", "422": "records that do not fit the model; the bad fields named",
                  "503": "no verified model loaded: still loading, or the version is refused (the reason says which)"}
PREDICT_ERRORS = {**SCORING_ERRORS, "400": "a body that is not JSON or CSV; explain asked with bad arguments, "
                                           "or of an estimator without explanations"}
NAMED_MODEL_ERRORS = {**PREDICT_ERRORS, "404": "no such model in the store"}


def predict(service: ScoringService, request: HttpRequest) -> Reply:
    query = request.query
    explain = explain_asked(query.get("explain"), query.get("top_k"), "query")
    predictor = service.model(request.params.get("name"))
    require(request.content_type, (JSON, CSV))
    if request.content_type == CSV:
        records = csv_records(request.body(), predictor.schema)
    else:
        records = records_of(json_of(request.body()), "the body")
    matrix = service.matrix(predictor, records)
    predictions = predictor.output_records(service.score_matrix(predictor, matrix))
    if explain is not None:
        for prediction, explanation in zip(predictions, service.explain(predictor, matrix, explain.top_k)):
            prediction.update(explanation)
    return Reply({"model": {"name": predictor.name, "version": predictor.version},
                  "predictions": predictions}, predictor=predictor)


def models(service: ScoringService, request: HttpRequest) -> Reply:
    return Reply({"models": service.catalogue()})


PREDICT_BODY = {JSON: {"oneOf": [{"$ref": "#/components/schemas/Record"},
                                 {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Record"}}]},
                CSV: {"type": "string"}}
PREDICT_REPLY = {"200": {"description": "one prediction per record (with top_feature_attributions, "
                                        "baseline_prediction_value and prediction_value when explain=true)",
                         "content": {JSON: {"schema": {"$ref": "#/components/schemas/Predictions"}}}}}

EXPLAIN_QUERY = (("explain", "boolean", "add each row's feature attributions (SHAP values)"),
                 ("top_k", "integer", "only the K features with the largest attributions"))

ROUTES = [
    Route("/predict", "POST", predict, MLJOBS, "Score one record or a list of records with the default model",
          request=PREDICT_BODY, replies=PREDICT_REPLY, errors=PREDICT_ERRORS, query=EXPLAIN_QUERY),
    Route("/models/<name>/predict", "POST", predict, MLJOBS, "Score records with the named model (its alias, else production, else latest)",
          request=PREDICT_BODY, replies=PREDICT_REPLY, errors=NAMED_MODEL_ERRORS, query=EXPLAIN_QUERY),
    Route("/models", "GET", models, MLJOBS, "Every model in the store: versions, aliases, what a request gets, what is loaded",
          replies={"200": {"description": "the models"}}),
]
