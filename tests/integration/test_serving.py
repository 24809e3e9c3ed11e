"""Serving with real containers: gunicorn replicas behind nginx, every protocol over real HTTP,
bad input, oversized bodies, hot swap under load, a refused corrupt version, a replica killed
under load, and a fast stop."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.fault_table import record
from tests.integration.load import Load
from tests.unit.test_serve import BAD, GOOD, ROWS, csv_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(compose):
    return compose.start_fleet(replicas=2)


def test_every_protocol_answers_over_real_http(fleet):
    for base in (fleet.replica_url(), fleet.url("", lb=True)):
        native = requests.post(base + "/predict", json=ROWS, timeout=10)
        assert native.status_code == 200 and len(native.json()["predictions"]) == len(ROWS)
        labels = [p["prediction"] for p in native.json()["predictions"]]
        csv = requests.post(base + "/predict", data=csv_body(ROWS), headers={"Content-Type": "text/csv"}, timeout=10)
        assert [p["prediction"] for p in csv.json()["predictions"]] == labels
        mlflow = requests.post(base + "/invocations", json={"dataframe_split": {
            "columns": list(GOOD), "data": [list(r.values()) for r in ROWS]}}, timeout=10)
        assert mlflow.json() == {"predictions": labels}
        assert requests.get(base + "/ping", timeout=5).status_code == 200
        sagemaker = requests.post(base + "/invocations", data=csv_body(ROWS, header=False),
                                  headers={"Content-Type": "text/csv", "Accept": "text/csv"}, timeout=10)
        assert sagemaker.text.split() == labels
        for path in ("/health", "/version", "/metadata", "/openapi.json", "/v2/health/live", "/v2/models/demo/ready"):
            assert requests.get(base + path, timeout=5).status_code == 200, path


def test_open_inference_protocol_with_its_own_client(fleet):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=f"127.0.0.1:{fleet.lb_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("demo")
    metadata = client.get_model_metadata("demo")
    assert [i["name"] for i in metadata["inputs"]] == list(GOOD)
    inputs = []
    for feature in metadata["inputs"]:
        values = [r[feature["name"]] for r in ROWS]
        dtype = {"FP64": np.float64, "BYTES": np.object_, "BOOL": np.bool_}[feature["datatype"]]
        array = np.array([np.nan if v is None and dtype is np.float64 else ("" if v is None else v) for v in values], dtype=dtype)
        tensor = triton.InferInput(feature["name"], [len(ROWS)], feature["datatype"])
        tensor.set_data_from_numpy(array, binary_data=False)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput(o["name"], binary_data=False) for o in metadata["outputs"]]
    result = client.infer("demo", inputs, outputs=outputs)
    native = requests.post(fleet.replica_url("/predict"), json=[{k: (None if v is None else v) for k, v in r.items()} for r in ROWS], timeout=10)
    assert [p.decode() if isinstance(p, bytes) else p for p in result.as_numpy("prediction")] == [p["prediction"] for p in native.json()["predictions"]]


def test_bad_input_is_always_a_4xx_in_the_documented_shape(fleet):
    replies = [(name, path, status, requests.post(fleet.url(path, lb=True), data=body, timeout=10,
                                                  headers={"Content-Type": content_type} if content_type else {}))
               for name, path, body, content_type, status, _ in BAD]
    record("bad inputs (table), through nginx", len(replies), "requests", "5xx", sum(r.status_code >= 500 for *_, r in replies))
    for name, path, status, reply in replies:
        assert reply.status_code == status, name
        payload = reply.json()
        error = payload["details"] if path.startswith("/v2/") else payload["error"]
        assert {"code", "message"} <= set(error) and "Traceback" not in reply.text, name


def worker_events(fleet) -> int:
    """gunicorn's log lines for workers started or killed (an OOM kill shows as both)."""
    logs = fleet("logs", "serve").stdout + fleet("logs", "serve").stderr
    return logs.count("Booting worker") + logs.count("was sent SIGKILL")


def test_huge_bad_requests_get_a_small_4xx_and_kill_no_worker(fleet):
    before = worker_events(fleet)
    rows = 900_000  # 7 MiB of v2 tensors for one feature; the model's six others are missing
    v2 = json.dumps({"inputs": [{"name": "age", "shape": [rows], "datatype": "FP64", "data": [12.125] * rows}]}).encode()
    assert len(v2) > 7_000_000
    bad_rows = json.dumps([{**GOOD, "age": "old"}] * 20_000).encode()  # 3.6 MB, every row wrong
    replies = [requests.post(fleet.url(path, lb=True), data=body, timeout=60, headers={"Content-Type": "application/json"})
               for path, body in (("/v2/models/demo/infer", v2), ("/predict", bad_rows))]
    record("huge bad requests (7 MiB v2, 3.6 MB records), through nginx", 2, "requests", "5xx",
           sum(r.status_code >= 500 for r in replies))
    assert [r.status_code for r in replies] == [422, 422]
    assert all(len(r.content) < 20_000 for r in replies), [len(r.content) for r in replies]
    assert replies[1].json()["error"]["field_count"] == 20_000 and len(replies[1].json()["error"]["fields"]) == 100
    assert requests.post(fleet.url("/predict", lb=True), json=GOOD, timeout=10).status_code == 200
    time.sleep(1)  # a killed worker is reported within a moment
    assert worker_events(fleet) == before


def test_oversized_bodies_get_413_with_or_without_content_length(fleet):
    big = b"[" + b",".join([b'{"age": 1}'] * 1_000_000) + b"]"  # about 11 MB, over the 8 MB limit
    sized = requests.post(fleet.replica_url("/predict"), data=big, headers={"Content-Type": "application/json"}, timeout=30)
    assert sized.status_code == 413 and sized.json()["error"]["code"] == "request_entity_too_large"
    chunked = requests.post(fleet.replica_url("/predict"), data=(big[i:i + 65536] for i in range(0, len(big), 65536)),
                            headers={"Content-Type": "application/json"}, timeout=30)
    assert chunked.status_code == 413


def test_promotion_under_load_swaps_without_a_failed_request(fleet):
    assert fleet.run("train", "--seed", "7").returncode == 0  # version 2; production stays at 1
    with Load(fleet.url("/predict", lb=True)) as load:
        time.sleep(2)
        assert {v for _, v in load.versions} == {"1"}
        promoted_at = time.monotonic()
        assert fleet.run("models", "promote", "demo", "2").returncode == 0
        time.sleep(8)
    assert load.failures() == 0, (load.statuses, load.errors[:5])
    first_new = min(t for t, v in load.versions if v == "2")
    assert first_new - promoted_at < 6
    assert all(v == "2" for t, v in load.versions if t > first_new + 3)  # every worker of every replica


def test_a_corrupt_version_is_refused_while_the_old_one_keeps_serving(fleet):
    serving = requests.get(fleet.url("/version", lb=True), timeout=5).json()["model"]["version"]
    assert fleet.run("train", "--seed", "8").returncode == 0
    newest = max(int(v) for v in fleet("run", "--rm", "-T", "--entrypoint", "ls", "models", "/models/demo").stdout.split() if v.isdigit())
    # Flip one byte of the new model, then point the alias at it behind the store's back.
    tamper = (f"printf x | dd of=/models/demo/{newest}/model.lgb.txt bs=1 seek=200 conv=notrunc 2>/dev/null && "
              f"echo {newest} > /models/demo/aliases/production")
    assert fleet("run", "--rm", "-T", "--entrypoint", "sh", "models", "-c", tamper).returncode == 0
    with Load(fleet.url("/predict", lb=True)) as load:
        time.sleep(6)
    assert load.failures() == 0 and {v for _, v in load.versions} == {serving}
    metrics = requests.get(fleet.replica_url("/metrics"), timeout=5).text
    assert f'mljobs_model_load_failures_total{{version="{newest}"}}' in metrics
    logs = fleet("logs", "serve").stdout
    assert f"version {newest} refused" in logs and "does not match its MANIFEST" in logs
    assert fleet.run("models", "rollback", "demo").returncode == 0


def test_killing_a_replica_under_load_loses_no_request(fleet):
    assert fleet("up", "-d", "--scale", "serve=3", "--no-recreate", "serve").returncode == 0
    time.sleep(3)
    fleet.wait_ready(lb=True)
    victim = fleet.containers("serve")[-1]
    with Load(fleet.url("/predict", lb=True), threads=4) as load:
        time.sleep(2)
        subprocess.run(["docker", "kill", victim], capture_output=True, check=True)
        answered_by_kill = load.sent
        time.sleep(5)
    record("serve replica killed under load, through nginx", load.sent, "requests", "failed", load.failures())
    # Properties, not throughput: the others kept answering after the kill, and nothing failed.
    assert load.sent > answered_by_kill and load.failures() == 0, (load.statuses, load.errors[:5])


def test_docker_stop_ends_a_replica_cleanly_within_two_seconds(fleet):
    container = next(c for c in fleet.containers("serve")
                     if subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", c], capture_output=True, text=True).stdout.strip() == "true")
    start = time.monotonic()
    subprocess.run(["docker", "stop", "--time", "15", container], capture_output=True, check=True)
    took = time.monotonic() - start
    code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", container], capture_output=True, text=True).stdout.strip()
    assert took < 2 and code == "0", (took, code)


MLFLOW_CLIENT = """
import json, sys
import pandas as pd
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

client = ScoringServerClient("127.0.0.1", int(sys.argv[1]))
client.wait_server_ready(timeout=30)
rows = pd.DataFrame(json.loads(sys.argv[2]))
print(json.dumps(client.invoke(rows).get_predictions(predictions_format="ndarray").tolist()))
"""


def test_mlflow_protocol_with_mlflows_own_client(fleet):
    """MLflow's ScoringServerClient (in its own environment), through the load balancer."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from common import MLFLOW_PACKAGES, cached_venv

    python = cached_venv("mlflow", MLFLOW_PACKAGES)
    result = subprocess.run([str(python), "-c", MLFLOW_CLIENT, str(fleet.lb_port), json.dumps(ROWS)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    native = requests.post(fleet.url("/predict", lb=True), json=ROWS, timeout=10).json()["predictions"]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [p["prediction"] for p in native]
