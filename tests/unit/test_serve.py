"""The Flask app in-process: the native predict route, health, and error shapes."""

import pytest

from mljobs import demo
from mljobs.predictor import load_predictor
from mljobs.serve.app import create_app
from mljobs.store import ModelStore


@pytest.fixture
def client(demo_store):
    app = create_app({"MODELS_DIR": str(demo_store / "models"), "MODEL": "demo", "POLL_SECONDS": "3600"})
    yield app.test_client()
    app.extensions["mljobs.holder"].stop()


def test_served_predictions_equal_the_batch_path(client, demo_store):
    table = demo.scoring_table(rows=20)
    reply = client.post("/predict", json=table.to_pylist())
    assert reply.status_code == 200
    body = reply.get_json()
    assert body["model"] == {"name": "demo", "version": "1"}
    predictor = load_predictor(ModelStore(demo_store / "models"), "demo")
    raw = predictor.predict_raw(predictor.featurizer.transform_table(table).matrix)
    assert [p["probabilities"]["yes"] for p in body["predictions"]] == raw[:, 1].tolist()
    assert [p["prediction"] for p in body["predictions"]] == predictor.labels(raw)


def test_one_record_gives_one_prediction(client):
    record = demo.scoring_table(rows=1).to_pylist()[0]
    reply = client.post("/predict", json=record)
    assert reply.status_code == 200 and len(reply.get_json()["predictions"]) == 1


def test_bad_fields_are_all_named_in_a_422(client):
    reply = client.post("/predict", json={"age": "old", "plan": "basic"})
    assert reply.status_code == 422
    error = reply.get_json()["error"]
    assert error["code"] == "invalid_input"
    assert {f["field"] for f in error["fields"]} == {"age", "tenure_months", "monthly_charges", "region", "has_support"}


@pytest.mark.parametrize(
    "kwargs, status",
    [
        ({"data": "age=3", "content_type": "text/plain"}, 415),
        ({"data": b"\xff\xfe", "content_type": "application/json"}, 415),
        ({"data": "{not json", "content_type": "application/json"}, 400),
        ({"json": []}, 400),
    ],
    ids=["text-plain", "not-utf8", "broken-json", "empty-list"],
)
def test_bad_bodies_get_a_json_4xx(client, kwargs, status):
    reply = client.post("/predict", **kwargs)
    assert reply.status_code == status
    assert set(reply.get_json()["error"]) >= {"code", "message"}


def test_health_and_readiness(client):
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/ping").status_code == 200


def test_not_ready_without_a_model_but_alive(tmp_path):
    app = create_app({"MODELS_DIR": str(tmp_path), "MODEL": "demo", "POLL_SECONDS": "3600"})
    client = app.test_client()
    assert client.get("/v2/health/live").status_code == 200
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503 and "does not exist" in ready.get_json()["reason"]
    assert client.post("/predict", json={}).status_code == 503
