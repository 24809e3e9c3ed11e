"""The Open Inference Protocol with the clients v2 users already have, against real serve containers:
tritonclient with its defaults (binary inputs, binary outputs), KServe's REST client in v2 mode
(JSON and binary), MLServer's NumpyRequestCodec and PandasCodec. Every layout they send (a tensor
per feature, one [N, F] tensor, a data frame's columns) gives native /predict's answers for the
same rows, for the demo model (numeric, categorical, boolean) and an all-numeric one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.unit.test_serve import ROWS
from tests.unit.test_v2_layouts import NUMBERS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from common import cached_venv  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(compose):
    return compose.start_fleet(replicas=2)


def text(value):
    if value is None:
        return b""
    return (str(value).lower() if isinstance(value, bool) else str(value)).encode()


def native(fleet):
    reply = requests.post(fleet.url("/predict", lb=True), json=ROWS, timeout=10)
    assert reply.status_code == 200
    return [p["prediction"] for p in reply.json()["predictions"]], [p["probabilities"]["yes"] for p in reply.json()["predictions"]]


def column(datatype, values):
    if datatype == "FP64":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if datatype == "BOOL":
        return np.array(values, dtype=np.bool_)
    return np.array([text(v) for v in values], dtype=np.object_)


def tensor(triton, name, array, datatype):
    item = triton.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array)  # binary_data=True: tritonclient's default
    return item


def test_tritonclient_defaults_per_feature_and_matrix(fleet):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=f"127.0.0.1:{fleet.lb_port}")
    metadata = client.get_model_metadata("demo")
    matrix_input = metadata["parameters"]["matrix_input"]
    per_feature = []
    for feature in metadata["inputs"]:
        array = column(feature["datatype"], [r[feature["name"]] for r in ROWS])
        per_feature.append(tensor(triton, feature["name"], array, feature["datatype"]))
    matrix = np.array([[text(r[name]) for name in matrix_input["columns"]] for r in ROWS], dtype=np.object_)
    labels, p_yes = native(fleet)
    for inputs in (per_feature, [tensor(triton, matrix_input["name"], matrix, matrix_input["datatype"])]):
        result = client.infer("demo", inputs)  # no outputs named: every output, binary
        assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
        assert [p.decode() for p in result.as_numpy("prediction")] == labels
        assert result.as_numpy("proba_yes").tolist() == p_yes


# --- MLServer's codecs and KServe's REST client, each in a virtual environment of its own ----------
# They are not the project's dependencies (heavy, and their pins would move ours): cached_venv makes
# each once outside the repo, and a script run with its python builds the requests or makes the calls.

MLSERVER = ["mlserver==1.7.1", "pandas==2.3.3"]  # mlserver 1.7.1 cannot encode pandas 3's `str` columns
KSERVE = ["kserve==0.21.0"]  # apart from mlserver: their pins conflict

ENCODE = '''
import json, sys
import numpy as np
import pandas as pd
from mlserver.codecs import NumpyRequestCodec, PandasCodec

job = json.load(sys.stdin)
rows = job["rows"]
if job["codec"] == "numpy":
    request = NumpyRequestCodec.encode_request(np.array([[r[n] for n in job["columns"]] for r in rows], dtype=job["dtype"]))
else:
    frame = pd.DataFrame(rows)
    for name in job["object_columns"]:  # a mixed column: Python objects, NaN where a value is missing
        frame[name] = pd.Series([np.nan if r[name] is None else r[name] for r in rows], dtype=object)
    request = PandasCodec.encode_request(frame)
print(request.model_dump_json())
'''

KSERVE_CALLS = '''
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

job = json.load(sys.stdin)
metadata, rows = job["metadata"], job["rows"]

def array(datatype, values):
    if datatype == "BYTES":
        text = [b"" if v is None else (str(v).lower() if isinstance(v, bool) else str(v)).encode() for v in values]
        return np.array(text, dtype=np.object_)
    if datatype == "BOOL":
        return np.array(values, dtype=np.bool_)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

def tensor(name, datatype, data, binary):
    item = InferInput(name, list(data.shape), datatype)
    item.set_data_from_numpy(data, binary_data=binary)
    return item

async def main():
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=30))
    matrix = metadata["parameters"]["matrix_input"]
    answers = []
    for binary in (False, True):
        per_feature = [tensor(f["name"], f["datatype"], array(f["datatype"], [r[f["name"]] for r in rows]), binary)
                       for f in metadata["inputs"]]
        flat = array(matrix["datatype"], [r[n] for r in rows for n in matrix["columns"]])
        one = [tensor(matrix["name"], matrix["datatype"], flat.reshape(len(rows), -1), binary)]
        # Binary inputs ask for binary outputs too.
        asked = [RequestedOutput(o["name"], {"binary_data": True}) for o in metadata["outputs"]] if binary else None
        for inputs in (per_feature, one):
            result = await client.infer(job["url"], InferRequest(metadata["name"], inputs, request_outputs=asked),
                                        model_name=metadata["name"])
            answers.append({"binary": binary, "layout": "per-feature" if inputs is per_feature else "matrix",
                            "outputs": {o.name: [v.decode() if isinstance(v, bytes) else v for v in o.as_numpy().tolist()]
                                        for o in result.outputs}})
    await client.close()
    print(json.dumps(answers))

asyncio.run(main())
'''


def run_in(venv: str, packages: list[str], script: str, job: dict) -> str:
    python = cached_venv(venv, packages)
    done = subprocess.run([str(python), "-c", script], input=json.dumps(job), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def answers_of(base: str, rows: list[dict]) -> dict[str, list]:
    """Native /predict's answers, in the v2 outputs' names."""
    reply = requests.post(f"{base}/predict", json=rows, timeout=10)
    assert reply.status_code == 200, reply.text[:500]
    predictions = reply.json()["predictions"]
    answers = {"prediction": [p["prediction"] for p in predictions]}
    for label in predictions[0]["probabilities"]:
        answers[f"proba_{label}"] = [p["probabilities"][label] for p in predictions]
    return answers


def infer(base: str, model: str, body: str) -> dict[str, list]:
    reply = requests.post(f"{base}/v2/models/{model}/infer", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert reply.status_code == 200, reply.text[:500]
    return {o["name"]: o["data"] for o in reply.json()["outputs"]}


@pytest.fixture(scope="module")
def numeric(fleet):
    """An all-numeric model, "nums", trained in the project and served by one more serve container;
    returns that container's base URL."""
    rng = np.random.default_rng(1)
    x1, x2, count = rng.normal(size=600), rng.normal(size=600), rng.integers(0, 9, 600)
    lines = ["x1,x2,count,y"] + [f"{a},{b},{c},{'up' if a + 0.5 * b - 0.1 * c > 0 else 'down'}" for a, b, c in zip(x1, x2, count)]
    (fleet.data_dir / "input" / "nums.csv").write_text("\n".join(lines) + "\n")
    trained = fleet.run("train", "--input", "/data/input/nums.csv", "--target", "y", "--task", "classification",
                        "--model", "nums", "--promote", "production")
    assert trained.returncode == 0, trained.stderr[-3000:]
    name = f"{fleet.project}-nums"
    started = fleet("run", "-d", "--name", name, "-e", "MLJOBS_MODEL=nums", "serve")
    assert started.returncode == 0, started.stderr[-3000:]
    fleet.wait_ready(url=fleet.replica_url("/v2/health/ready", name))
    return fleet.replica_url("", name)


def test_mlserver_numpy_request_codec_numeric_model(numeric):
    matrix = requests.get(f"{numeric}/v2/models/nums", timeout=10).json()["parameters"]["matrix_input"]
    body = run_in("mlserver", MLSERVER, ENCODE, {"codec": "numpy", "dtype": "float64", "columns": matrix["columns"], "rows": NUMBERS})
    sent = json.loads(body)["inputs"]
    assert len(sent) == 1 and sent[0]["shape"] == [len(NUMBERS), 3] and sent[0]["datatype"] == "FP64"
    assert infer(numeric, "nums", body) == answers_of(numeric, NUMBERS)


def test_mlserver_numpy_request_codec_object_matrix_demo(fleet):
    """A mixed object array (numbers, strings, booleans): one [N, F] BYTES tensor of JSON values."""
    base = fleet.url("", lb=True)
    matrix = requests.get(f"{base}/v2/models/demo", timeout=10).json()["parameters"]["matrix_input"]
    body = run_in("mlserver", MLSERVER, ENCODE, {"codec": "numpy", "dtype": "object", "columns": matrix["columns"], "rows": ROWS})
    assert json.loads(body)["inputs"][0]["datatype"] == "BYTES"
    assert infer(base, "demo", body) == answers_of(base, ROWS)


def test_mlserver_pandas_codec_string_and_mixed_object_columns(fleet):
    base = fleet.url("", lb=True)
    rows = [dict(r) for r in ROWS]
    rows[2]["monthly_charges"] = 99  # ints and floats in one object column
    rows[3]["has_support"] = None  # booleans and a missing value in one object column
    body = run_in("mlserver", MLSERVER, ENCODE, {"codec": "pandas", "rows": rows, "object_columns": ["monthly_charges", "has_support"]})
    content_types = {i["name"]: (i.get("parameters") or {}).get("content_type") for i in json.loads(body)["inputs"]}
    assert json.loads(body)["parameters"]["content_type"] == "pd"
    assert content_types == {"age": None, "tenure_months": None, "monthly_charges": "pd_json", "plan": "str",
                             "region": "str", "has_support": "pd_json"}
    assert infer(base, "demo", body) == answers_of(base, rows)


@pytest.mark.parametrize("model", ["demo", "nums"])
def test_kserve_rest_client_v2_json_and_binary(fleet, numeric, model):
    base = fleet.url("", lb=True) if model == "demo" else numeric
    rows = [dict(r) for r in ROWS] if model == "demo" else NUMBERS
    if model == "demo":
        rows[1]["region"] = None  # sent as b"": a missing category
    metadata = requests.get(f"{base}/v2/models/{model}", timeout=10).json()
    answers = json.loads(run_in("kserve", KSERVE, KSERVE_CALLS, {"metadata": metadata, "rows": rows, "url": base}))
    expected = answers_of(base, rows)
    assert len(answers) == 4
    for answer in answers:
        assert answer["outputs"] == expected, (answer["layout"], answer["binary"])
