"""The server's shape and the defects outside clients found: deep JSON, huge bad requests, headers
on errors, v2 datatypes, a follower that survives anything, and a route table the OpenAPI
document covers whole."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pyarrow as pa
import pytest

from mljobs import demo
from mljobs.serve.app import create_app
from mljobs.serve.holder import Health
from mljobs.store import ModelStore
from mljobs.training import TrainSpec, publish, train

ROWS = demo.scoring_table(rows=3, seed=31).drop_columns([demo.ID_COLUMN]).to_pylist()
FEATURES = list(ROWS[0])


def app_for(models_dir, model="demo", **extra):
    app = create_app({"MODELS_DIR": str(models_dir), "MODEL": model, "POLL_SECONDS": "3600", **extra})
    return app, app.test_client()


@pytest.fixture
def client(demo_store):
    app, client = app_for(demo_store / "models")
    yield client
    app.extensions["mljobs.holder"].stop()


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("path", ["/predict", "/invocations", "/v2/models/demo/infer"])
@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_json_nested_thousands_deep_is_a_400_not_a_500(client, path, levels):
    reply = client.post(path, data=deep(levels), content_type="application/json")
    assert reply.status_code == 400
    assert "nested too deeply" in json.dumps(reply.get_json())


def test_a_feature_value_nested_deep_is_named_as_the_bad_field(client):
    body = '{"age": ' + deep(500) + "}"
    reply = client.post("/predict", data=body, content_type="application/json")
    assert reply.status_code in (400, 422) and reply.status_code < 500


def test_a_huge_v2_request_missing_features_gets_a_small_422(client):
    rows = 900_000
    body = json.dumps({"inputs": [{"name": "age", "shape": [rows], "datatype": "FP64", "data": [1] * rows}]})
    assert len(body) > 2_000_000
    reply = client.post("/v2/models/demo/infer", data=body, content_type="application/json")
    assert reply.status_code == 422
    assert len(reply.get_data()) < 5_000  # one error per missing feature, not one per row
    fields = {f["field"] for f in reply.get_json()["details"]["fields"]}
    assert fields == set(FEATURES) - {"age"}


def test_many_bad_rows_are_named_up_to_100_and_counted(client):
    bad = [{**ROWS[0], "age": "old"} for _ in range(5_000)]
    reply = client.post("/predict", json=bad)
    error = reply.get_json()["error"]
    assert reply.status_code == 422 and len(error["fields"]) == 100 and error["field_count"] == 5_000
    assert error["fields"][0] == {"field": "age", "reason": "expected a number, got 'old'", "row": 0}
    assert "(and 4999 more)" in error["message"]
    columns = {"inputs": {k: [r[k] for r in bad] for k in FEATURES}}
    reply = client.post("/invocations", json=columns)
    assert reply.status_code == 422 and reply.get_json()["error"]["field_count"] == 5_000


def test_error_replies_name_the_model_version_too(client):
    for path, body in (("/predict", {"age": "x"}), ("/invocations", {"nope": 1}), ("/v2/models/demo/infer", {})):
        reply = client.post(path, json=body)
        assert 400 <= reply.status_code < 500 and reply.headers["X-Model-Version"] == "1", path
    assert client.get("/nope").headers["X-Model-Version"] == "1"


def test_the_415_message_names_what_to_send(client):
    assert client.post("/v2/models/demo/infer", data="x", content_type="text/plain").get_json()["error"] == (
        "send application/json (or no content type), not text/plain")
    assert client.post("/predict", data="x", content_type="text/plain").get_json()["error"]["message"] == (
        "send application/json or text/csv, not text/plain")


@pytest.mark.parametrize("labels, datatype", [([False, True], "BOOL"), ([0.5, 1.5], "FP64"), ([3, 7], "INT64"), (["a", "b"], "BYTES")],
                         ids=["bool", "float", "int", "str"])
def test_v2_metadata_gives_the_datatype_infer_sends(tmp_path, labels, datatype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    table = pa.table({"x": x, "y": pa.array([labels[int(v > 0)] for v in x])})
    store = ModelStore(tmp_path / "models")
    publish(store, "m", train(table, TrainSpec("y", task="classification")), {"run_id": "t", "created": "now", "source": "t"})
    app, client = app_for(tmp_path / "models", "m")
    meta = {o["name"]: o["datatype"] for o in client.get("/v2/models/m").get_json()["outputs"]}
    reply = client.post("/v2/models/m/infer", json={"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [-1.0, 1.0]}]})
    sent = {o["name"]: o["datatype"] for o in reply.get_json()["outputs"]}
    assert meta["prediction"] == sent["prediction"] == datatype
    app.extensions["mljobs.holder"].stop()


def test_the_follower_survives_unexpected_errors_and_counts_them(demo_store, monkeypatch):
    app, client = app_for(demo_store / "models")
    holder = app.extensions["mljobs.holder"]

    def broken(ref):
        raise ValueError("Expecting value: line 1 column 1 (char 0)")  # what an unguarded json.loads raises

    monkeypatch.setattr(holder.store, "resolve", broken)
    holder.poll_seconds = 0.01
    holder.start_following()
    time.sleep(0.3)
    assert holder.readiness().ready and client.get("/v2/health/ready").status_code == 200  # it still serves demo:1
    metrics = client.get("/metrics").get_data(as_text=True)
    follow_errors = float(re.search(r"^mljobs_model_follow_errors_total (\S+)$", metrics, re.M).group(1))
    assert follow_errors >= 3
    monkeypatch.undo()
    holder.stop()


def test_a_stalled_follower_makes_every_probe_not_ready(demo_store):
    app, client = app_for(demo_store / "models", STALE_SECONDS="0.2")
    holder = app.extensions["mljobs.holder"]
    assert client.get("/ping").status_code == 200
    holder.stop()  # the follower ends: nothing checks the alias any more
    time.sleep(0.4)
    assert holder.readiness().state is Health.NOT_FOLLOWING
    for path in ("/ping", "/health", "/v2/health/ready", "/v2/models/demo/ready"):
        reply = client.get(path)
        assert reply.status_code == 503, path
    assert "has not checked" in client.get("/ping").get_json()["reason"]
    assert client.post("/predict", json=ROWS[0]).status_code == 200  # it still answers those who ask


def test_the_openapi_document_covers_every_route(client):
    app = client.application
    doc = client.get("/openapi.json").get_json()
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == documented
