"""A signed deployment in real containers: training signs and compiles, predict and serve score
with the compiled model and agree with LightGBM, and a tampered or foreign version is refused."""

from __future__ import annotations

import json
import secrets

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests

from mljobs.demo import ID_COLUMN, scoring_table
from mljobs.estimators.native_lightgbm import NativeLightGBMEstimator
from mljobs.predictor import load_predictor
from mljobs.store import ModelStore
from tests.integration.conftest import Compose

pytestmark = pytest.mark.integration
KEY = secrets.token_hex(32)


@pytest.fixture(scope="module")
def signed(built_images, tmp_path_factory, monkeypatch_module):
    data_dir = tmp_path_factory.mktemp("signed")
    for sub in ("input", "output"):
        (data_dir / sub).mkdir()
    (data_dir / "output").chmod(0o777)
    project = Compose(f"mljobs-test-{secrets.token_hex(4)}", data_dir)
    project.env["MLJOBS_SIGNING_KEY"] = KEY
    monkeypatch_module.setenv("MLJOBS_SIGNING_KEY", KEY)  # host-side jobs and servers hold the key too
    trained = project.run("train", "--promote", "production")
    assert trained.returncode == 0, trained.stderr[-3000:]
    yield project
    project.down()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_predict_and_serve_score_a_signed_model_with_its_compiled_predictor(signed):
    shown = signed.run("models", "show", "demo", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["signature_checked"] is True and json.loads(shown.stdout)["compiled_predictor"] is True
    predictor = load_predictor(ModelStore(signed.copy_store("demo", signed.data_dir / "store-copy"), KEY.encode()), "demo")
    assert isinstance(predictor.estimator, NativeLightGBMEstimator)
    rows = scoring_table()
    pacsv.write_csv(rows, signed.data_dir / "input" / "rows.csv")
    result = signed.run("predict", "--input", "/data/input/rows.csv", "--proba")
    assert result.returncode == 0, result.stderr[-3000:]
    [scored] = (signed.data_dir / "output").glob("model=demo/date=*/run=*/predictions.parquet")
    expected = predictor.predict_raw(predictor.featurizer.transform_table(rows).matrix)
    proba = np.column_stack([pq.read_table(scored).column(f"proba_{c}").to_numpy() for c in predictor.schema.classes])
    assert proba.shape == expected.shape
    np.testing.assert_array_equal(proba, expected)  # the same compiled code on the same numbers

    assert signed("up", "-d", "serve").returncode == 0
    signed.wait_ready()
    record = {k: v for k, v in rows.slice(0, 1).to_pylist()[0].items() if k != ID_COLUMN}
    reply = requests.post(signed.url("/predict"), json=record, timeout=10)
    assert reply.status_code == 200, reply.text
    served = reply.json()["predictions"][0]["probabilities"]
    one = predictor.predict_raw(predictor.featurizer.transform_table(rows.slice(0, 1)).matrix)[0]
    assert [served[str(c)] for c in predictor.schema.classes] == pytest.approx(list(one), abs=1e-12)


def test_a_version_tampered_without_the_key_is_refused_and_nothing_is_written(signed):
    """Someone with write access to the volume but not the key swaps the compiled code and
    rewrites the MANIFEST to match: predict must refuse the version and write no output."""
    tamper = signed(
        "run", "--rm", "-T", "--entrypoint", "python", "models", "-c",
        "from pathlib import Path; from mljobs.store import write_manifest; "
        "folder = max(Path('/models/demo').glob('[0-9]*')); "
        "(folder / 'model.native.o').write_bytes(b'not the signed code'); write_manifest(folder)",
    )
    assert tamper.returncode == 0, tamper.stderr[-2000:]
    before = sorted((signed.data_dir / "output").rglob("*"))
    result = signed.run("predict", "--force")
    assert result.returncode == 4, result.stderr[-2000:]
    assert "is not signed with this deployment's signing key" in result.stderr
    assert sorted((signed.data_dir / "output").rglob("*")) == before
