"""Open Inference Protocol layouts in-process: one [N, F] tensor beside a tensor per feature, the
binary tensor extension (built and read by tritonclient's own code), MLServer's content types,
and shapes and datatypes checked against the data. Every layout must give native /predict's
answers for the same rows, for the demo model (numeric, categorical, boolean) and an all-numeric one."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import tritonclient.http as triton

from mljobs import demo
from mljobs.serve.app import create_app
from mljobs.store import ModelStore
from mljobs.training import TrainSpec, publish, train

ROWS = demo.scoring_table(rows=6, seed=32).drop_columns([demo.ID_COLUMN]).to_pylist()
FEATURES = list(ROWS[0])
NUMERIC_FEATURES = ["x1", "x2", "count"]


def numeric_rows(n: int = 6) -> list[dict[str, float | int]]:
    rng = np.random.default_rng(5)
    return [{"x1": float(a), "x2": float(b), "count": int(c)}
            for a, b, c in zip(rng.normal(size=n), rng.normal(size=n), rng.integers(0, 9, n))]


NUMBERS = numeric_rows()


def serve(models_dir, model, **extra):
    app = create_app({"MODELS_DIR": str(models_dir), "MODEL": model, "POLL_SECONDS": "3600", **extra})
    return app, app.test_client()


@pytest.fixture
def client(demo_store):
    app, client = serve(demo_store / "models", "demo")
    yield client
    app.extensions["mljobs.holder"].stop()


@pytest.fixture(scope="module")
def numeric_store(tmp_path_factory):
    rng = np.random.default_rng(1)
    x1, x2, count = rng.normal(size=600), rng.normal(size=600), rng.integers(0, 9, 600)
    table = pa.table({"x1": x1, "x2": x2, "count": count,
                      "y": pa.array(np.where(x1 + 0.5 * x2 - 0.1 * count > 0, "up", "down"))})
    root = tmp_path_factory.mktemp("numeric")
    publish(ModelStore(root / "models"), "nums", train(table, TrainSpec("y", task="classification")),
            {"run_id": "t", "created": "now", "source": "t"})
    return root / "models"


@pytest.fixture
def numeric(numeric_store):
    app, client = serve(numeric_store, "nums")
    yield client
    app.extensions["mljobs.holder"].stop()


def native(client, rows):
    reply = client.post("/predict", json=rows)
    assert reply.status_code == 200, reply.get_json()
    return [p["prediction"] for p in reply.get_json()["predictions"]], [p["probabilities"] for p in reply.get_json()["predictions"]]


def outputs_of(reply):
    assert reply.status_code == 200, reply.get_data(as_text=True)[:500]
    return {o["name"]: o["data"] for o in reply.get_json()["outputs"]}


def assert_same_as_native(outputs, expected):
    labels, probabilities = expected
    assert [p.decode() if isinstance(p, bytes) else p for p in outputs["prediction"]] == labels
    for label in probabilities[0]:
        assert list(outputs[f"proba_{label}"]) == [p[label] for p in probabilities]


def as_text(value):
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- one [N, F] tensor --------------------------------------------------------------------

def test_a_bytes_matrix_scores_the_demo_model_like_predict(client):
    data = [[as_text(r[f]) for f in FEATURES] for r in ROWS]
    body = {"inputs": [{"name": "input-0", "shape": [len(ROWS), len(FEATURES)], "datatype": "BYTES", "data": data}]}
    assert_same_as_native(outputs_of(client.post("/v2/models/demo/infer", json=body)), native(client, ROWS))


@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flat"])
def test_a_numeric_matrix_scores_an_all_numeric_model_like_predict(numeric, nested):
    rows = [[r[f] for f in NUMERIC_FEATURES] for r in NUMBERS]
    data = rows if nested else [v for row in rows for v in row]
    body = {"inputs": [{"name": "input__0", "shape": [len(rows), 3], "datatype": "FP64", "data": data}]}
    assert_same_as_native(outputs_of(numeric.post("/v2/models/nums/infer", json=body)), native(numeric, NUMBERS))


def test_metadata_advertises_both_layouts_and_openapi_documents_the_matrix(client, numeric):
    meta = client.get("/v2/models/demo").get_json()
    assert [i["name"] for i in meta["inputs"]] == FEATURES  # the per-feature inputs, as before
    assert meta["parameters"]["matrix_input"] == {"name": "input-0", "datatype": "BYTES", "shape": [-1, len(FEATURES)], "columns": FEATURES}
    assert numeric.get("/v2/models/nums").get_json()["parameters"]["matrix_input"]["datatype"] == "FP64"
    assert "binary_tensor_data" in client.get("/v2").get_json()["extensions"]
    summary = client.get("/openapi.json").get_json()["paths"]["/v2/models/{name}/infer"]["post"]["summary"]
    assert "[N, F]" in summary and "Inference-Header-Content-Length" in summary


# --- the binary tensor extension, with tritonclient's own encoder and decoder -------------

def triton_input(name, array, datatype, binary=True):
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def post_triton(client, model, inputs, outputs=None, parameters=None):
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs, parameters=parameters)
    headers = {"Inference-Header-Content-Length": str(json_size)} if json_size is not None else {}
    reply = client.post(f"/v2/models/{model}/infer", data=body, headers=headers)
    assert reply.status_code == 200, reply.get_data()[:500]
    length = reply.headers.get("Inference-Header-Content-Length")
    result = triton.InferenceServerClient.parse_response_body(reply.get_data(), header_length=int(length) if length else None)
    names = [o["name"] for o in result.get_response()["outputs"]]
    return {n: result.as_numpy(n).tolist() for n in names}, reply


def demo_feature_inputs(binary=True):
    inputs = []
    for feature in FEATURES:
        values = [r[feature] for r in ROWS]
        if any(isinstance(v, str) for v in values):
            inputs.append(triton_input(feature, np.array([as_text(v).encode() for v in values], dtype=np.object_), "BYTES", binary))
        elif any(isinstance(v, bool) for v in values):
            inputs.append(triton_input(feature, np.array(values, dtype=np.bool_), "BOOL", binary))
        else:
            inputs.append(triton_input(feature, np.array([np.nan if v is None else v for v in values], dtype=np.float64), "FP64", binary))
    return inputs


def test_tritonclient_defaults_binary_inputs_and_outputs_per_feature(client):
    got, reply = post_triton(client, "demo", demo_feature_inputs())
    assert reply.mimetype == "application/octet-stream"
    assert_same_as_native(got, native(client, ROWS))


def test_tritonclient_binary_bytes_matrix_and_chosen_outputs(client):
    matrix = np.array([[as_text(r[f]).encode() for f in FEATURES] for r in ROWS], dtype=np.object_)
    outputs = [triton.InferRequestedOutput("prediction", binary_data=True), triton.InferRequestedOutput("proba_yes", binary_data=False)]
    got, reply = post_triton(client, "demo", [triton_input("input-0", matrix, "BYTES")], outputs)
    labels, probabilities = native(client, ROWS)
    assert set(got) == {"prediction", "proba_yes"}
    assert [p.decode() for p in got["prediction"]] == labels and got["proba_yes"] == [p["yes"] for p in probabilities]
    header = json.loads(reply.get_data()[:int(reply.headers["Inference-Header-Content-Length"])])
    assert "data" in header["outputs"][1] and "parameters" in header["outputs"][0]


@pytest.mark.parametrize("dtype, datatype", [(np.float64, "FP64"), (np.float32, "FP32"), (np.int64, "INT64")])
def test_tritonclient_binary_numeric_matrix(numeric, dtype, datatype):
    matrix = np.array([[r[f] for f in NUMERIC_FEATURES] for r in NUMBERS], dtype=dtype)
    got, _ = post_triton(numeric, "nums", [triton_input("input__0", matrix, datatype)])
    same_rows = [dict(zip(NUMERIC_FEATURES, row)) for row in matrix.tolist()]  # what the client really sent
    assert_same_as_native(got, native(numeric, same_rows))


def test_json_outputs_when_binary_is_not_asked(client):
    body, _ = triton.InferenceServerClient.generate_request_body(
        demo_feature_inputs(binary=False), outputs=[triton.InferRequestedOutput("prediction", binary_data=False)])
    reply = client.post("/v2/models/demo/infer", data=body)
    assert reply.mimetype == "application/json" and [o["name"] for o in reply.get_json()["outputs"]] == ["prediction"]


def test_the_size_limit_applies_to_the_whole_binary_body(demo_store):
    app, client = serve(demo_store / "models", "demo", MAX_BODY_BYTES="2000")
    big = np.zeros((400, len(FEATURES)), dtype=np.object_)
    big[:] = b"x"
    body, size = triton.InferenceServerClient.generate_request_body([triton_input("input-0", big, "BYTES")])
    assert size is not None and size < 2000 < len(body)
    reply = client.post("/v2/models/demo/infer", data=body, headers={"Inference-Header-Content-Length": str(size)})
    assert reply.status_code == 413
    app.extensions["mljobs.holder"].stop()


# --- MLServer's content types --------------------------------------------------------------

def test_pandas_codec_columns_with_str_and_pd_json(client):
    """PandasCodec's shape: [N, 1] columns, strings as `str`, a mixed object column as `pd_json`."""
    rows = [dict(r) for r in ROWS]
    rows[1]["age"] = None  # JSON's null, sent as the text "null"
    inputs = []
    for feature in FEATURES:
        values = [r[feature] for r in rows]
        if feature == "region":
            inputs.append({"name": feature, "shape": [len(ROWS), 1], "datatype": "BYTES", "parameters": {"content_type": "str"},
                           "data": [as_text(v) for v in values]})
        elif feature == "age":  # an object column of numbers and nulls, each value JSON text
            inputs.append({"name": feature, "shape": [len(ROWS), 1], "datatype": "BYTES", "parameters": {"content_type": "pd_json"},
                           "data": [json.dumps(v) for v in values]})
        else:
            datatype = "BYTES" if isinstance(values[0], str) else "BOOL" if isinstance(values[0], bool) else "FP64"
            inputs.append({"name": feature, "shape": [len(ROWS), 1], "datatype": datatype, "data": values})
    body = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    assert_same_as_native(outputs_of(client.post("/v2/models/demo/infer", json=body)), native(client, rows))


def test_numpy_request_codec_np_content_type(numeric):
    rows = [[r[f] for f in NUMERIC_FEATURES] for r in NUMBERS]
    body = {"parameters": {"content_type": "np"},
            "inputs": [{"name": "input-0", "shape": [len(rows), 3], "datatype": "FP64", "parameters": {"content_type": "np"}, "data": rows}]}
    assert_same_as_native(outputs_of(numeric.post("/v2/models/nums/infer", json=body)), native(numeric, NUMBERS))


# --- shapes and datatypes checked against the data -----------------------------------------

def per_feature(**changes):
    inputs = [{"name": k, "shape": [len(ROWS)], "datatype": "BYTES" if isinstance(ROWS[0][k], str) else "FP64",
               "data": [r[k] for r in ROWS]} for k in FEATURES]
    for item in inputs:
        item.update(changes.get(item["name"], {}))
    return {"inputs": inputs}


BAD = [
    ("shape-more-than-data", per_feature(age={"shape": [len(ROWS) + 2]}), "age"),
    ("unknown-datatype", per_feature(tenure_months={"datatype": "FOO"}), "tenure_months"),
    ("bool-for-a-string-feature", per_feature(plan={"datatype": "BOOL", "data": [True] * len(ROWS)}), "plan"),
    ("bool-datatype-string-data", per_feature(plan={"datatype": "BOOL"}), "plan"),
    ("int-datatype-float-data", per_feature(monthly_charges={"datatype": "INT64", "data": [1.5] * len(ROWS)}), "monthly_charges"),
    ("bytes-datatype-number-data", per_feature(region={"data": [1] * len(ROWS)}), "region"),
    ("shape-not-a-list", per_feature(age={"shape": "6"}), "age"),
    ("wide-feature-tensor", per_feature(age={"shape": [3, 2]}), "age"),
    ("numeric-matrix-with-categoricals", {"inputs": [{"name": "input-0", "shape": [1, 6], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}]}, "input-0"),
    ("matrix-too-few-values", {"inputs": [{"name": "input-0", "shape": [2, 6], "datatype": "BYTES", "data": ["1"] * 6}]}, "input-0"),
]


@pytest.mark.parametrize("body, name", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_mismatch_is_a_400_naming_the_input(client, body, name):
    reply = client.post("/v2/models/demo/infer", json=body)
    assert reply.status_code == 400, reply.get_json()
    assert f"'{name}'" in reply.get_json()["error"]


BINARY_BAD = [
    ("header-longer-than-body", b'{"inputs": []}', "999"),
    ("header-not-a-number", b'{"inputs": []}', "ten"),
    ("size-past-the-end", b'{"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 16}}]}' + b"\0" * 8, None),
    ("bytes-left-over", b'{"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8}}]}' + b"\0" * 12, None),
    ("ragged-fp64", b'{"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 5}}]}' + b"\0" * 5, None),
    ("cut-bytes-element", b'{"inputs": [{"name": "plan", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]}' + b"\x09\0\0\0ab", None),
]


@pytest.mark.parametrize("body, length", [b[1:] for b in BINARY_BAD], ids=[b[0] for b in BINARY_BAD])
def test_malformed_binary_bodies_are_400s(client, body, length):
    header = length or str(body.index(b"}]}") + 3)
    reply = client.post("/v2/models/demo/infer", data=body, headers={"Inference-Header-Content-Length": header})
    assert reply.status_code == 400, reply.get_data()[:300]
    assert isinstance(reply.get_json()["error"], str)


def test_unknown_requested_output_is_a_400(client):
    body = {**per_feature(), "outputs": [{"name": "nope"}]}
    reply = client.post("/v2/models/demo/infer", json=body)
    assert reply.status_code == 400 and "'nope'" in reply.get_json()["error"]


def test_an_np_bytes_tensor_may_carry_json_numbers_and_booleans(client):
    """MLServer's NumpyRequestCodec sends a mixed-type array as BYTES holding plain JSON values."""
    tensor = {"name": "input-0", "datatype": "BYTES", "shape": [1, 6], "parameters": {"content_type": "np"},
              "data": [24, 6, 1.5, "basic", "south", False]}
    reply = client.post("/v2/models/demo/infer", json={"inputs": [tensor]})
    assert reply.status_code == 200, reply.get_json()
