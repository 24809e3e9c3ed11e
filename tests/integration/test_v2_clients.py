"""The Open Inference Protocol with tritonclient's defaults (binary inputs, binary outputs) against
real serve containers behind nginx: a tensor per feature and one [N, F] BYTES tensor give native
/predict's answers for the same rows."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.unit.test_serve import ROWS

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
