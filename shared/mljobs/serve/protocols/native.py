"""mljobs' own protocol: POST /predict with one record or a list of them (JSON or CSV); the reply
names the model and gives each prediction with its class probabilities."""

from __future__ import annotations

from ..http import HttpRequest, Reply
from ..routing import MLJOBS, Route
from ..service import ScoringService
from .bodies import CSV, JSON, csv_records, json_of, records_of, require

SCORING_ERRORS = {"415": "not JSON or CSV, or not UTF-8", "422": "records that do not fit the model; the bad fields named",
                  "503": "no verified model loaded yet"}


def predict(service: ScoringService, request: HttpRequest) -> Reply:
    predictor = service.model()
    require(request.content_type, (JSON, CSV))
    if request.content_type == CSV:
        records = csv_records(request.body(), predictor.schema)
    else:
        records = records_of(json_of(request.body()), "the body")
    raw = service.score(predictor, records)
    return Reply({"model": {"name": predictor.name, "version": predictor.version},
                  "predictions": predictor.output_records(raw)}, predictor=predictor)


ROUTES = [
    Route("/predict", "POST", predict, MLJOBS, "Score one record or a list of records",
          request={JSON: {"oneOf": [{"$ref": "#/components/schemas/Record"},
                                    {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Record"}}]},
                   CSV: {"type": "string"}},
          replies={"200": {"description": "one prediction per record",
                           "content": {JSON: {"schema": {"$ref": "#/components/schemas/Predictions"}}}}},
          errors=SCORING_ERRORS),
]
