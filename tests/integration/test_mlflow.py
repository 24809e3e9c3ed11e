"""MLflow users, against a real `mlflow server` (SQLite backend, local artifact folder) that the test
starts from MLflow's own virtual environment: models that MLflow itself saved (a LightGBM booster,
an LGBMClassifier, a scikit-learn Pipeline one-hot encoding a text column) imported through the
real `models` container and scored through batch, HTTP and SQL exactly as
`mlflow.pyfunc.load_model(...).predict` scores them; a model without a signature and a pickle
outside the allow-list refused (the latter imported with --trust-pickle, which its version
records); `models:/` and `runs:/` URIs imported from the server; and a training run in the real
train container logged to the server, read back with MLflow's own client."""

from __future__ import annotations

import json
import os
import signal
import subprocess  # nosec B404 - the test's own MLflow server and scripts
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests

from mljobs.launcher import cli
from tests.integration.conftest import free_port
from tests.s3 import Relay, docker_gateway

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from common import MLFLOW_PACKAGES, cached_venv  # noqa: E402

pytestmark = pytest.mark.integration

FEATURES = ["x1", "x2", "n"]
REGISTERED = "mljobs-test-pipeline"

# Run with MLflow's python: save the models the way MLflow users do. argv: output folder, tracking URI.
SAVE_MODELS = '''
import json, operator, sys
import numpy as np, pandas as pd, lightgbm as lgb, mlflow, mlflow.lightgbm, mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

out, tracking = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
n = 400
frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "n": rng.integers(0, 50, size=n),
                      "plan": rng.choice(["basic", "plus", "pro"], size=n)})
y = ((frame.x1 + 0.5 * frame.x2 + (frame.plan == "pro") + rng.normal(scale=0.5, size=n)) > 0.5).astype(int)
numeric = frame[["x1", "x2", "n"]]
booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 8}, lgb.Dataset(numeric, y), num_boost_round=20)
mlflow.lightgbm.save_model(booster, f"{out}/booster", signature=infer_signature(numeric, booster.predict(numeric)))
classifier = lgb.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1).fit(numeric, y.map({0: "no", 1: "yes"}))
mlflow.lightgbm.save_model(classifier, f"{out}/classifier", signature=infer_signature(numeric, classifier.predict(numeric)))
pipe = Pipeline([("prep", ColumnTransformer([("num", StandardScaler(), ["x1", "x2", "n"]),
                                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])),
                 ("clf", LogisticRegression())]).fit(frame, y)
signature = infer_signature(frame, pipe.predict(frame))
mlflow.sklearn.save_model(pipe, f"{out}/pipeline", signature=signature, serialization_format="cloudpickle")
mlflow.sklearn.save_model(pipe, f"{out}/unsigned")
# operator.neg: a function no allow-list trusts, harmless here
odd = Pipeline([("prep", pipe.named_steps["prep"]), ("neg", FunctionTransformer(operator.neg)),
                ("clf", LogisticRegression())]).fit(frame, y)
mlflow.sklearn.save_model(odd, f"{out}/odd", signature=signature, serialization_format="pickle")
frame.sample(60, random_state=3).to_csv(f"{out}/rows.csv", index=False)
mlflow.set_tracking_uri(tracking)
with mlflow.start_run() as run:
    mlflow.sklearn.log_model(pipe, name="model", signature=signature, registered_model_name="''' + REGISTERED + '''")
    mlflow.lightgbm.log_model(booster, name="booster", signature=infer_signature(numeric, booster.predict(numeric)))
print(json.dumps({"run_id": run.info.run_id}))
'''

# Run with MLflow's python: what MLflow predicts for the rows. argv: the folder of models.
PREDICT = '''
import json, os, sys
os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
import mlflow.pyfunc, mlflow.sklearn, pandas as pd
out = sys.argv[1]
rows = pd.read_csv(f"{out}/rows.csv")
numeric = rows[["x1", "x2", "n"]]
print(json.dumps({
    "booster": [float(v) for v in mlflow.pyfunc.load_model(f"{out}/booster").predict(numeric)],
    "classifier": [str(v) for v in mlflow.pyfunc.load_model(f"{out}/classifier").predict(numeric)],
    "pipeline": [int(v) for v in mlflow.pyfunc.load_model(f"{out}/pipeline").predict(rows)],
    "pipeline_proba": mlflow.sklearn.load_model(f"{out}/pipeline").predict_proba(rows)[:, 1].tolist(),
}))
'''

# Run with MLflow's python: the runs MLflow's own client finds for our model. argv: tracking URI.
READ_RUNS = '''
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name("mljobs-test")
runs = client.search_runs([experiment.experiment_id], "tags.`mljobs.model` = 'demo'")
print(json.dumps([{"metrics": r.data.metrics, "params": r.data.params, "tags": r.data.tags, "status": r.info.status,
                   "artifacts": sorted(a.path for a in client.list_artifacts(r.info.run_id))} for r in runs]))
'''


class MlflowServer:
    def __init__(self, python: Path, folder: Path):
        self.python, self.port = python, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(python.parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
                   "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1"]
        self.log = (folder / "server.log").open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.relay = Relay(docker_gateway(), self.port)  # containers reach the host's 127.0.0.1 through it
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-3000:]}")

    def script(self, source: str, *args: str) -> Any:
        done = subprocess.run([str(self.python), "-c", source, *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        answers = [line for line in done.stdout.splitlines() if line.startswith(("{", "["))]  # MLflow prints links too
        return json.loads(answers[-1]) if answers else None

    def stop(self) -> None:
        self.relay.close()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and its workers: the group it started
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
        except ProcessLookupError:
            pass
        self.log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(cached_venv("mlflow", MLFLOW_PACKAGES), tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def saved(compose: Any, mlflow_server: MlflowServer) -> dict[str, Any]:
    """The models MLflow saved (in the input folder compose mounts), and what MLflow predicts."""
    folder = compose.data_dir / "input" / "mlflow"
    logged = mlflow_server.script(SAVE_MODELS, str(folder), mlflow_server.url)
    return {"rows": pacsv.read_csv(folder / "rows.csv").to_pylist(), **logged, **mlflow_server.script(PREDICT, str(folder))}


def import_model(compose: Any, *args: str) -> subprocess.CompletedProcess:
    return compose.run("models", "import", *args)


def metadata(compose: Any, name: str) -> dict[str, Any]:
    shown = compose.run("models", "show", name, "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    found = compose("run", "--rm", "-T", "--entrypoint", "cat", "models", f"/models/{name}/{json.loads(shown.stdout)['version']}/metadata.json")
    return json.loads(found.stdout)


def test_mlflow_models_score_as_mlflow_does_through_batch_http_and_sql(compose: Any, saved: dict[str, Any],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for folder, name in (("booster", "mlbooster"), ("pipeline", "mlpipe")):
        done = import_model(compose, f"/data/input/mlflow/{folder}", "--model", name)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"as {name}:1" in done.stdout
    # The launcher, from the host folder (mounted read-only), into the same store.
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", compose.project)
    host_folder = compose.data_dir / "input" / "mlflow" / "classifier"
    assert cli.main(["models", "import", str(host_folder), "--model", "mlclassifier"]) == 0

    # Batch: every row, MLflow's numbers.
    for name in ("mlbooster", "mlclassifier", "mlpipe"):
        done = compose.run("predict", "--model", name, "--input", "/data/input/mlflow/rows.csv", "--proba")
        assert done.returncode == 0, done.stderr[-2000:]
    batch = {name: pq.read_table(next((compose.data_dir / "output").glob(f"model={name}/date=*/run=*/predictions.parquet"))).to_pydict()
             for name in ("mlbooster", "mlclassifier", "mlpipe")}
    np.testing.assert_allclose(batch["mlbooster"]["proba_1"], saved["booster"], rtol=1e-12)
    assert batch["mlclassifier"]["prediction"] == saved["classifier"]
    assert batch["mlpipe"]["prediction"] == saved["pipeline"]
    np.testing.assert_allclose(batch["mlpipe"]["proba_1"], saved["pipeline_proba"], rtol=1e-12)

    # SQL: the same, from DuckDB.
    query = ("SELECT predict_mlbooster_proba(t).\"1\" AS booster, predict_mlclassifier(t) AS classifier, "
             "predict_mlpipe(t) AS pipe FROM '/data/input/mlflow/rows.csv' t")
    done = compose.run("sql", query)
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = (compose.data_dir / "output").glob("job=sql/date=*/run=*/result.parquet")
    sql = pq.read_table(result).to_pydict()
    np.testing.assert_allclose(sql["booster"], saved["booster"], rtol=1e-12)
    assert sql["classifier"] == saved["classifier"] and sql["pipe"] == saved["pipeline"]

    # HTTP: MLflow's own request format at /invocations, and our /predict with probabilities.
    compose.env["MLJOBS_MODEL"] = "mlpipe"
    assert compose("up", "-d", "serve").returncode == 0
    compose.wait_ready()
    columns = list(saved["rows"][0])
    reply = requests.post(compose.url("/invocations"), timeout=30, json={
        "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in saved["rows"]]}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == saved["pipeline"]
    reply = requests.post(compose.url("/predict"), json=saved["rows"], timeout=30)
    np.testing.assert_allclose([p["probabilities"]["1"] for p in reply.json()["predictions"]], saved["pipeline_proba"], rtol=1e-12)
    compose.env["MLJOBS_MODEL"] = "mlbooster"
    assert compose("up", "-d", "serve").returncode == 0
    compose.wait_ready()
    reply = requests.post(compose.url("/predict"), json=saved["rows"], timeout=30)
    assert reply.headers["X-Model-Version"] == "1"
    np.testing.assert_allclose([p["probabilities"]["1"] for p in reply.json()["predictions"]], saved["booster"], rtol=1e-12)


def test_a_model_without_a_signature_or_with_an_untrusted_pickle_is_refused(compose: Any, saved: dict[str, Any]) -> None:
    unsigned = import_model(compose, "/data/input/mlflow/unsigned", "--model", "unsigned")
    assert unsigned.returncode == 4
    assert unsigned.stderr.strip().splitlines()[-1] == (
        "models failed: the MLflow model has no signature, so its input columns are unknown: give --example FILE "
        "(a few rows of its input columns), or save it with a signature")
    with_example = import_model(compose, "/data/input/mlflow/unsigned", "--model", "unsigned", "--example", "/data/input/mlflow/rows.csv")
    assert with_example.returncode == 0, with_example.stderr[-2000:]

    odd = import_model(compose, "/data/input/mlflow/odd", "--model", "odd")
    assert odd.returncode == 4
    assert "the pickle names _operator.neg, which is outside the allow-list" in odd.stderr.strip().splitlines()[-1]
    assert "odd" not in compose.run("models", "list", "--json").stdout
    trusted = import_model(compose, "/data/input/mlflow/odd", "--model", "odd", "--trust-pickle")
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    meta = metadata(compose, "odd")
    assert meta["trust_pickle"] is True and meta["imported"]["trusted_types"] == ["_operator.neg"]
    scored = compose.run("predict", "--model", "odd", "--input", "/data/input/mlflow/rows.csv")
    assert scored.returncode == 0, scored.stderr[-2000:]


def test_registry_and_run_uris_import_and_a_training_run_is_logged(compose: Any, saved: dict[str, Any], mlflow_server: MlflowServer) -> None:
    compose.env.update({"MLFLOW_TRACKING_URI": mlflow_server.relay.endpoint, "MLFLOW_EXPERIMENT_NAME": "mljobs-test"})
    try:
        done = import_model(compose, f"models:/{REGISTERED}/1", "--model", "fromregistry")
        assert done.returncode == 0, done.stderr[-2000:]
        assert metadata(compose, "fromregistry")["imported"]["source"] == f"models:/{REGISTERED}/1"
        done = import_model(compose, f"runs:/{saved['run_id']}/booster", "--model", "fromrun")
        assert done.returncode == 0, done.stderr[-2000:]
        scored = compose.run("predict", "--model", "fromrun", "--input", "/data/input/mlflow/rows.csv", "--proba")
        assert scored.returncode == 0, scored.stderr[-2000:]
        [part] = (compose.data_dir / "output").glob("model=fromrun/date=*/run=*/predictions.parquet")
        np.testing.assert_allclose(pq.read_table(part).column("proba_1").to_numpy(), saved["booster"], rtol=1e-12)

        trained = compose.run("train")
        assert trained.returncode == 0, trained.stderr[-3000:]
    finally:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            compose.env.pop(name)
    ours = json.loads(compose.run("models", "show", "demo", "--json").stdout)
    [run] = mlflow_server.script(READ_RUNS, mlflow_server.url)
    assert run["status"] == "FINISHED"
    assert run["metrics"] == pytest.approx(ours["metrics"]) and "roc_auc" in run["metrics"]
    assert run["tags"]["mljobs.model_ref"] == f"demo:{ours['version']}"
    assert run["params"]["estimator"] == "lightgbm" and run["params"]["target"] == "churned"
    assert {"report.html", "schema.json", "metadata.json"} <= set(run["artifacts"])
