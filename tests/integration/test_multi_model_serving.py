"""Every model of the store behind one real server container: a classifier and a regressor on
their own routes, a promotion that swaps only its model, exact versions or 404, room for one
model with alternating requests, and explanations over real HTTP."""

from __future__ import annotations

import re
import time

import pyarrow.parquet as pq
import pytest
import requests

from mljobs import demo

from tests.unit.test_serve import ROWS

pytestmark = pytest.mark.integration

CHARGES_TRAINING = ("--input", "/data/input/customers.parquet", "--model", "charges", "--target", "monthly_charges",
                    "--drop", "customer_id")
CHARGES = [{"age": 40, "tenure_months": 12, "plan": "basic", "region": "east", "has_support": True, "churned": "no"}]


@pytest.fixture(scope="module")
def server(compose):
    """demo (classifier, in production) and charges (regression), one server with room for one model."""
    pq.write_table(demo.training_table(rows=2000), compose.data_dir / "input" / "customers.parquet")
    for args in (("--promote", "production"), CHARGES_TRAINING):
        trained = compose.run("train", *args)
        assert trained.returncode == 0, trained.stderr[-3000:]
    compose.env.update({"MLJOBS_MAX_MODELS": "1", "MLJOBS_WORKERS": "1"})
    up = compose("up", "-d", "serve")
    assert up.returncode == 0, up.stderr[-3000:]
    compose.wait_ready()
    return compose


def loads(server, model: str) -> float:
    text = requests.get(server.url("/metrics"), timeout=5).text
    found = re.search(rf'^mljobs_model_loads_total{{model="{model}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_two_models_one_server_each_on_its_own_routes(server):
    demo = requests.post(server.url("/models/demo/predict"), json=ROWS, timeout=10)
    charges = requests.post(server.url("/models/charges/predict"), json=CHARGES, timeout=30)
    assert demo.status_code == charges.status_code == 200
    assert demo.headers["X-Model-Name"] == "demo" and charges.headers["X-Model-Name"] == "charges"
    assert "probabilities" in demo.json()["predictions"][0]  # a classifier
    assert set(charges.json()["predictions"][0]) == {"prediction"} and charges.json()["predictions"][0]["prediction"] > 0
    schema = requests.get(server.url("/v2/models/charges"), timeout=10).json()
    assert "monthly_charges" not in [i["name"] for i in schema["inputs"]] and "churned" in [i["name"] for i in schema["inputs"]]
    assert requests.post(server.url("/models/charges/predict"), json=ROWS, timeout=10).status_code == 422  # not its schema
    assert requests.post(server.url("/models/nope/predict"), json=ROWS, timeout=10).status_code == 404
    assert requests.get(server.url("/v2/models/demo/versions/1/ready"), timeout=10).status_code == 200
    assert requests.get(server.url("/v2/models/demo/versions/7/ready"), timeout=10).status_code == 404
    listing = {m["name"]: m for m in requests.get(server.url("/models"), timeout=10).json()["models"]}
    assert set(listing) == {"demo", "charges"} and listing["demo"]["serves"] == "1"


def test_with_room_for_one_alternating_requests_all_succeed_and_loads_are_counted(server):
    before = loads(server, "charges")
    codes = []
    for _ in range(4):
        codes.append(requests.post(server.url("/models/charges/predict"), json=CHARGES, timeout=30).status_code)
        codes.append(requests.post(server.url("/predict"), json=ROWS, timeout=30).status_code)
    assert codes == [200] * 8
    assert loads(server, "charges") >= before + 4
    assert requests.get(server.url("/ping"), timeout=5).status_code == 200


def test_promoting_one_model_swaps_only_it_and_a_named_version_is_served_exactly(server):
    retrained = server.run("train", *CHARGES_TRAINING, "--seed", "7", "--promote", "production")
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = requests.post(server.url("/models/charges/predict"), json=CHARGES, timeout=30)
        if reply.headers["X-Model-Version"] == "2":
            break
        time.sleep(0.5)
    assert reply.headers["X-Model-Version"] == "2"
    assert requests.post(server.url("/models/demo/predict"), json=ROWS, timeout=30).headers["X-Model-Version"] == "1"
    old = requests.post(server.url("/v2/models/charges/versions/1/infer"), timeout=30, json={"inputs": [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "BOOL" if isinstance(v, bool) else "FP64",
         "data": [v]} for k, v in CHARGES[0].items()]})
    assert old.status_code == 200 and old.json()["model_version"] == "1"
    assert requests.post(server.url("/v2/models/charges/versions/3/infer"), json={"inputs": []}, timeout=10).status_code == 404


def test_explanations_over_real_http_add_up_to_the_score(server):
    for path, body in (("/predict?explain=true", ROWS), ("/models/charges/predict?explain=true&top_k=2", CHARGES)):
        reply = requests.post(server.url(path), json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        for prediction in reply.json()["predictions"]:
            attributions = prediction["top_feature_attributions"]
            if "top_k" not in path:
                total = prediction["baseline_prediction_value"] + sum(a["attribution"] for a in attributions)
                assert abs(total - prediction["prediction_value"]) < 1e-6
            else:
                assert len(attributions) == 2
    regression = requests.post(server.url("/models/charges/predict?explain=true"), json=CHARGES, timeout=30).json()["predictions"][0]
    assert abs(regression["prediction_value"] - regression["prediction"]) < 1e-6  # a regressor's raw score is its prediction
    bad = requests.post(server.url("/predict?explain=perhaps"), json=ROWS, timeout=10)
    assert bad.status_code == 400 and "explain" in bad.json()["error"]["message"]
