"""One server, every model of the store: named routes, exact versions, the LRU bound, the listing,
and explanations through HTTP (SHAP values plus the base value give the raw score)."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from mljobs import demo
from mljobs.serve.app import create_app
from mljobs.store import ModelStore
from mljobs.training import TrainSpec, publish, train

PROVENANCE = {"run_id": "t", "created": "now", "source": "t"}
ROWS = demo.scoring_table(rows=5, seed=3).drop_columns([demo.ID_COLUMN]).to_pylist()


def regression_table(rows: int = 600) -> pa.Table:
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=rows), rng.normal(size=rows)
    return pa.table({"x": x, "z": z, "price": 3 * x - z + rng.normal(scale=0.1, size=rows)})


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi") / "models"
    store = ModelStore(root)
    table = demo.training_table(rows=1500)
    for seed in (1, 2):  # demo:1 and demo:2
        publish(store, "demo", train(table, TrainSpec(demo.TARGET, drop=[demo.ID_COLUMN], seed=seed)), PROVENANCE)
    publish(store, "price", train(regression_table(), TrainSpec("price")), PROVENANCE)
    store.promote("demo", "1", "production")
    return root


def server(root, **settings):
    app = create_app({"MODELS_DIR": str(root), "MODEL": "demo", "POLL_SECONDS": "3600", **settings})
    return app, app.test_client()


def stop(app):
    app.extensions["mljobs.registry"].stop()


def loads(client, model):
    found = re.search(rf'^mljobs_model_loads_total{{model="{model}"}} (\S+)$', client.get("/metrics").get_data(as_text=True), re.M)
    return float(found.group(1)) if found else 0.0


def test_each_model_answers_on_its_own_routes_with_its_own_schema(store_root):
    app, client = server(store_root)
    demo_reply = client.post("/models/demo/predict", json=ROWS)
    price_reply = client.post("/models/price/predict", json=[{"x": 1.0, "z": 0.0}])
    assert demo_reply.status_code == price_reply.status_code == 200
    assert demo_reply.headers["X-Model-Name"] == "demo" and demo_reply.headers["X-Model-Version"] == "1"  # production
    assert price_reply.headers["X-Model-Name"] == "price" and 2 < price_reply.get_json()["predictions"][0]["prediction"] < 4
    assert client.post("/predict", json=ROWS).get_json() == demo_reply.get_json()  # the unscoped route: the default model
    wrong = client.post("/models/price/predict", json=ROWS)  # demo's records do not fit price's schema
    assert wrong.status_code == 422 and wrong.headers["X-Model-Name"] == "price"
    inputs = [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}, {"name": "z", "shape": [1], "datatype": "FP64", "data": [0.0]}]
    v2 = client.post("/v2/models/price/infer", json={"inputs": inputs})
    assert v2.status_code == 200 and v2.get_json()["model_name"] == "price"
    assert [i["name"] for i in client.get("/v2/models/price").get_json()["inputs"]] == ["x", "z"]
    assert client.get("/models/price/metadata").get_json()["schema"]["target"] == "price"
    stop(app)


def test_a_path_naming_a_version_is_answered_by_that_version_or_404(store_root):
    app, client = server(store_root)
    for version in ("1", "2"):
        reply = client.post(f"/v2/models/demo/versions/{version}/infer", json={"inputs": [
            {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "BOOL" if isinstance(v, bool) else "FP64",
             "data": [v]} for k, v in ROWS[0].items()]})
        assert reply.status_code == 200 and reply.get_json()["model_version"] == version
        assert client.get(f"/v2/models/demo/versions/{version}").get_json()["versions"] == [version]
        assert client.get(f"/v2/models/demo/versions/{version}/ready").status_code == 200
        bad = client.post(f"/v2/models/demo/versions/{version}/infer", json={})
        assert bad.status_code == 400 and bad.headers["X-Model-Version"] == version  # an error names the version asked for
    for path in ("/v2/models/demo/versions/9/ready", "/v2/models/demo/versions/9", "/v2/models/nope/ready",
                 "/models/nope/metadata", "/v2/models/demo/versions/..%2Fx/ready", "/v2/models/a%20b/ready",
                 "/v2/models/demo/versions/1%3B2/ready"):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert "Traceback" not in reply.get_data(as_text=True)
    assert client.post("/v2/models/demo/versions/9/infer", json={"inputs": []}).status_code == 404
    stop(app)


def test_promoting_one_model_swaps_only_that_one(tmp_path):
    root = tmp_path / "models"
    store = ModelStore(root)
    table = demo.training_table(rows=1000)
    publish(store, "demo", train(table, TrainSpec(demo.TARGET, drop=[demo.ID_COLUMN])), PROVENANCE)
    publish(store, "price", train(regression_table(), TrainSpec("price")), PROVENANCE)
    app, client = server(root, POLL_SECONDS="0.05")
    assert client.post("/models/price/predict", json=[{"x": 1.0, "z": 0.0}]).headers["X-Model-Version"] == "1"
    publish(store, "demo", train(table, TrainSpec(demo.TARGET, drop=[demo.ID_COLUMN], seed=5)), PROVENANCE)
    store.promote("demo", "2", "production")
    for _ in range(100):
        if client.post("/models/demo/predict", json=ROWS[0]).headers["X-Model-Version"] == "2":
            break
        app.extensions["mljobs.registry"].default._stop.wait(0.05)
    assert client.post("/models/demo/predict", json=ROWS[0]).headers["X-Model-Version"] == "2"
    assert client.post("/models/price/predict", json=[{"x": 1.0, "z": 0.0}]).headers["X-Model-Version"] == "1"
    stop(app)


def test_with_room_for_one_model_alternating_requests_all_succeed(store_root):
    app, client = server(store_root, MAX_MODELS="1")
    for _ in range(3):
        assert client.post("/models/price/predict", json=[{"x": 0.5, "z": 0.5}]).status_code == 200
        assert client.post("/models/demo/predict", json=ROWS).status_code == 200
    assert loads(client, "price") >= 3 and loads(client, "demo") >= 3  # each request loaded its model again
    assert client.get("/ping").status_code == 200  # an unloaded default model is still ready: the next request loads it
    listing = {m["name"]: m for m in client.get("/models").get_json()["models"]}
    assert listing["demo"]["serves"] == "1" and listing["price"]["loaded"] is None and listing["demo"]["loaded"] == "1"
    index = client.post("/v2/repository/index").get_json()
    assert {(m["name"], m["state"]) for m in index} == {("demo", "READY"), ("price", "UNAVAILABLE")}
    stop(app)


def test_explanations_sum_to_the_raw_score_over_http(store_root):
    app, client = server(store_root)
    reply = client.post("/predict?explain=true", json=ROWS).get_json()["predictions"]
    predictor = app.extensions["mljobs.registry"].predictor()
    matrix = predictor.featurizer.transform_records(ROWS)
    margins = predictor.raw_margin(matrix)
    for row, prediction in enumerate(reply):
        total = prediction["baseline_prediction_value"] + sum(a["attribution"] for a in prediction["top_feature_attributions"])
        assert abs(total - prediction["prediction_value"]) < 1e-6
        # a binary classifier explains the class it predicts: the log-odds of that class
        log_odds = margins[row][0] if prediction["prediction"] == predictor.schema.classes[1] else -margins[row][0]
        assert abs(prediction["prediction_value"] - log_odds) < 1e-6
    top = client.post("/models/price/predict?explain=true&top_k=1", json=[{"x": 2.0, "z": 0.1}]).get_json()["predictions"][0]
    assert [a["feature"] for a in top["top_feature_attributions"]] == ["x"]
    v2 = client.post("/v2/models/price/infer", json={"parameters": {"explain": True}, "inputs": [
        {"name": "x", "shape": [1], "datatype": "FP64", "data": [2.0]}, {"name": "z", "shape": [1], "datatype": "FP64", "data": [0.1]}]})
    outputs = {o["name"]: o["data"] for o in v2.get_json()["outputs"]}
    assert set(outputs) >= {"prediction", "top_feature_attributions", "baseline_prediction_value", "prediction_value"}
    stop(app)


def test_a_memory_bound_unloads_like_the_count_bound(store_root):
    app, client = server(store_root, MAX_MODEL_MB="0.001")  # smaller than any model: one at a time
    for _ in range(2):
        assert client.post("/models/price/predict", json=[{"x": 0.5, "z": 0.5}]).status_code == 200
        assert client.post("/predict", json=ROWS).status_code == 200
    assert loads(client, "price") >= 2 and app.extensions["mljobs.registry"].loaded_count() == 1
    stop(app)


def test_multiclass_explanations_over_http_explain_the_predicted_class(tmp_path):
    rng = np.random.default_rng(4)
    x, z = rng.normal(size=900), rng.normal(size=900)
    label = np.where(x > 0.5, "high", np.where(x < -0.5, "low", "mid"))
    store = ModelStore(tmp_path / "models")
    publish(store, "tri", train(pa.table({"x": x, "z": z, "label": label}), TrainSpec("label")), PROVENANCE)
    app, client = server(tmp_path / "models", MODEL="tri")
    rows = [{"x": 1.5, "z": 0.0}, {"x": -1.5, "z": 1.0}, {"x": 0.0, "z": -1.0}]
    predictions = client.post("/predict?explain=true", json=rows).get_json()["predictions"]
    predictor = app.extensions["mljobs.registry"].predictor()
    margins = predictor.raw_margin(predictor.featurizer.transform_records(rows))
    classes = [str(c) for c in predictor.schema.classes]
    for row, prediction in enumerate(predictions):
        total = prediction["baseline_prediction_value"] + sum(a["attribution"] for a in prediction["top_feature_attributions"])
        assert abs(total - prediction["prediction_value"]) < 1e-6
        assert abs(prediction["prediction_value"] - margins[row][classes.index(prediction["prediction"])]) < 1e-6
    stop(app)


def test_mlflow_and_sagemaker_formats_reach_the_named_model(store_root):
    app, client = server(store_root)
    price = [{"x": 1.0, "z": 0.0}]
    by_path = client.post("/models/price/invocations", json={"dataframe_records": price})
    by_header = client.post("/invocations", data="1.0,0.0\n", content_type="text/csv",
                            headers={"X-Amzn-SageMaker-Target-Model": "price.tar.gz"})
    assert by_path.status_code == by_header.status_code == 200 and by_header.headers["X-Model-Name"] == "price"
    assert by_path.get_json()["predictions"] == by_header.get_json()["predictions"]
    assert client.post("/invocations", json={"dataframe_records": ROWS}).headers["X-Model-Name"] == "demo"  # no header: the default
    unknown = client.post("/invocations", json={"dataframe_records": price}, headers={"X-Amzn-SageMaker-Target-Model": "nope.tar.gz"})
    assert unknown.status_code == 404 and "nope" in unknown.get_json()["error"]["message"]
    stop(app)


def test_a_refused_version_named_in_the_path_is_a_503_that_says_so(tmp_path):
    root = tmp_path / "models"
    store = ModelStore(root)
    publish(store, "price", train(regression_table(), TrainSpec("price")), PROVENANCE)
    publish(store, "price", train(regression_table(), TrainSpec("price", seed=3)), PROVENANCE)
    (root / "price" / "2" / "schema.json").write_text("{}")  # no longer what the MANIFEST says
    app, client = server(root, MODEL="price")
    reply = client.get("/v2/models/price/versions/2")
    assert reply.status_code == 503 and "refused" in reply.get_json()["error"] and "Traceback" not in reply.get_data(as_text=True)
    assert client.get("/v2/models/price/versions/1").status_code == 200
    stop(app)


def test_a_round_that_ends_after_an_unload_leaves_the_model_unloaded(store_root):
    import threading

    app, client = server(store_root)
    holder = app.extensions["mljobs.registry"].default
    holder.unload()
    stopped = threading.Event()
    stopped.set()  # the follower's own stop signal, set by the unload while its round was loading
    holder.refresh(stopped)
    assert holder.predictor is None and holder.unloaded
    assert client.post("/predict", json=ROWS).status_code == 200  # the next request loads it again
    stop(app)


def test_a_pinned_version_that_met_a_store_outage_loads_at_the_next_request(store_root, monkeypatch):
    from mljobs.objectstore import StoreUnreachable

    app, client = server(store_root)
    store = app.extensions["mljobs.registry"].store
    real = store.open_version

    def down(name, version):
        raise StoreUnreachable("the store is down")

    monkeypatch.setattr(store, "open_version", down)
    assert client.get("/v2/models/demo/versions/2").status_code == 503
    monkeypatch.setattr(store, "open_version", real)
    assert client.get("/v2/models/demo/versions/2").status_code == 200  # no follower to retry it: the request does
    stop(app)
