"""MLflow in and out, without a server: the pickle scan and its allow-list, MLmodel folders written
here (as MLflow lays them out) imported and scored, the raw-column estimator, tracking that does
nothing without MLFLOW_TRACKING_URI, and the variables the contract hands to train and models."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mljobs import contract
from mljobs.errors import ModelError
from mljobs.jobs import models as models_job
from mljobs.launcher.mlflow_import import MODEL_MOUNT, import_spec
from mljobs.pickle_scan import load_pickle, pickle_globals, refused_names
from mljobs.predictor import load_predictor
from mljobs.store import ModelStore

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "shared"


class Sneaky:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("true",))


def training_frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x1": rng.normal(size=200), "n": rng.integers(0, 9, size=200),
                          "plan": rng.choice(["basic", "plus", "pro"], size=200)})
    return frame, ((frame.x1 + (frame.plan == "pro")) > 0.3).astype(int).to_numpy()


def pipeline() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, y = training_frame()
    prep = ColumnTransformer([("num", StandardScaler(), ["x1", "n"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])
    return Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(frame, y)


SIGNATURE = [{"type": "double", "name": "x1"}, {"type": "long", "name": "n"}, {"type": "string", "name": "plan"}]


def mlflow_folder(root: Path, model: Any, signature: list[dict[str, str]] | None = SIGNATURE) -> Path:
    """A folder laid out as mlflow.sklearn.save_model(..., serialization_format="pickle") lays it out."""
    root.mkdir()
    (root / "model.pkl").write_bytes(pickle.dumps(model))
    mlmodel: dict[str, Any] = {"flavors": {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "pickle"}},
                               "mlflow_version": "3.17.2"}
    if signature is not None:
        mlmodel["signature"] = {"inputs": json.dumps(signature)}
    import yaml

    (root / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return root


def run_models(tmp_path: Path, *args: str) -> int:
    return models_job.main(["--models-dir", str(tmp_path / "store"), "--runs-dir", str(tmp_path / "runs"), *args])


def test_the_scan_names_every_global_without_running_the_pickle() -> None:
    data = pickle.dumps([pipeline(), Sneaky()])
    names = pickle_globals(data)
    assert "sklearn.pipeline.Pipeline" in names and "posix.system" in names
    assert refused_names(data) == ["posix.system"]
    with pytest.raises(ModelError, match="the pickle names posix.system, which is outside the allow-list"):
        load_pickle(data)
    assert refused_names(pickle.dumps(pipeline())) == []


def test_the_restricted_loader_refuses_what_a_scan_could_miss() -> None:
    from mljobs.pickle_scan import RestrictedUnpickler

    with pytest.raises(ModelError, match="not on the allow-list"):
        RestrictedUnpickler(pickle.dumps(Sneaky()), frozenset()).load()


def test_a_pipeline_on_raw_columns_imports_and_scores_as_it_predicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = pipeline()
    assert run_models(tmp_path, "import", str(mlflow_folder(tmp_path / "m", model)), "--model", "pipe") == 0
    predictor = load_predictor(ModelStore(tmp_path / "store"), "pipe")
    assert predictor.estimator.kind == "sklearn-frame"
    assert predictor.schema.features[2].categories == ("basic", "plus", "pro")  # from the fitted OneHotEncoder
    frame, _ = training_frame()
    columns, _ = predictor.score_table(pa.Table.from_pandas(frame, preserve_index=False), proba=True)
    np.testing.assert_allclose(columns["proba_1"].to_numpy(), model.predict_proba(frame)[:, 1], rtol=1e-12)
    assert columns["prediction"].to_pylist() == model.predict(frame).tolist()
    assert "as pipe:1" in capsys.readouterr().out


def test_no_signature_and_an_untrusted_pickle_are_refused_with_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_models(tmp_path, "import", str(mlflow_folder(tmp_path / "a", pipeline(), None)), "--model", "a") == 4
    assert "has no signature" in capsys.readouterr().err.splitlines()[-1]
    assert run_models(tmp_path, "import", str(mlflow_folder(tmp_path / "b", [pipeline(), Sneaky()])), "--model", "b") == 4
    assert "posix.system" in capsys.readouterr().err.splitlines()[-1]
    assert run_models(tmp_path, "import", str(tmp_path / "nowhere"), "--model", "c") == 2
    assert not (tmp_path / "store" / "a").exists() and not (tmp_path / "store" / "b").exists()


def test_a_booster_takes_its_own_feature_order_and_binary_classes(tmp_path: Path) -> None:
    import lightgbm

    frame, y = training_frame()
    numeric = frame[["n", "x1"]]
    booster = lightgbm.train({"objective": "binary", "verbose": -1}, lightgbm.Dataset(numeric, y), num_boost_round=5)
    folder = tmp_path / "b"
    folder.mkdir()
    booster.save_model(str(folder / "model.lgb"))
    (folder / "MLmodel").write_text(json.dumps({"flavors": {"lightgbm": {"data": "model.lgb", "model_class": "lightgbm.basic.Booster"}},
                                                "signature": {"inputs": json.dumps(SIGNATURE[:2])}}))
    assert run_models(tmp_path, "import", str(folder), "--model", "b") == 0
    predictor = load_predictor(ModelStore(tmp_path / "store"), "b")
    assert predictor.schema.names == ["n", "x1"] and predictor.schema.classes == (0, 1)
    columns, _ = predictor.score_table(pa.Table.from_pandas(frame, preserve_index=False), proba=True)
    np.testing.assert_allclose(columns["proba_1"].to_numpy(), booster.predict(numeric), rtol=1e-12)


def test_training_without_a_tracking_uri_never_imports_mlflow(tmp_path: Path) -> None:
    code = ("import sys; from mljobs.jobs import train; code = train.main(['--models-dir', sys.argv[1], '--runs-dir', sys.argv[2]]);"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow')); sys.exit(code)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"PYTHONPATH": str(PACKAGE_ROOT)}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m"), str(tmp_path / "r")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]" and "MLflow" not in done.stderr


def test_the_contract_hands_mlflow_settings_to_train_and_models_only(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000", "MLFLOW_TRACKING_PASSWORD": "pw"}
    for name in ("train", "models"):
        plain, secret = contract.role_variables(contract.ROLES[name], environ)
        assert plain["MLFLOW_TRACKING_URI"] == "http://mlflow.internal:5000" and secret == {"MLFLOW_TRACKING_PASSWORD": "pw"}
        assert contract.needs_network(contract.ROLES[name], [], environ)
    for name in ("predict", "sql", "serve"):
        plain, secret = contract.role_variables(contract.ROLES[name], environ)
        assert not any(k.startswith("MLFLOW_") for k in {**plain, **secret})
    assert not contract.needs_network(contract.ROLES["predict"], [], environ)


def test_the_launcher_mounts_the_model_folder_read_only(tmp_path: Path) -> None:
    folder = mlflow_folder(tmp_path / "m", pipeline())
    spec = import_spec(["import", str(folder), "--model", "pipe", "--trust-pickle"])
    assert spec.args == ["--models-dir", "/models", "import", MODEL_MOUNT, "--model", "pipe", "--trust-pickle"]
    assert spec.mounts[MODEL_MOUNT].source == str(folder.resolve()) and spec.mounts[MODEL_MOUNT].read_only
    assert import_spec(["import", "models:/churn/3", "--model", "churn"]).mounts == {}


def test_an_unreachable_tracking_server_costs_a_warning_not_the_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    import socket

    from mljobs.jobs import train

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    assert train.main(["--models-dir", str(tmp_path / "m"), "--runs-dir", str(tmp_path / "r")]) == 0
    assert ModelStore(tmp_path / "m").versions("demo") == ["1"]
    assert any(r.getMessage().startswith(f"the run was not logged to MLflow: MLflow at http://127.0.0.1:{port} cannot be reached")
               for r in caplog.records)


def test_a_booster_trained_on_pandas_categories_keeps_their_codes(tmp_path: Path) -> None:
    import lightgbm

    frame, y = training_frame()
    frame["plan"] = pd.Categorical(frame["plan"], categories=["pro", "basic", "plus"])  # not sorted: codes follow this order
    booster = lightgbm.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 5}, lightgbm.Dataset(frame, y),
                             num_boost_round=5)
    folder = tmp_path / "b"
    folder.mkdir()
    booster.save_model(str(folder / "model.lgb"))
    (folder / "MLmodel").write_text(json.dumps({"flavors": {"lightgbm": {"data": "model.lgb"}},
                                                "signature": {"inputs": json.dumps(SIGNATURE)}}))
    assert run_models(tmp_path, "import", str(folder), "--model", "b") == 0
    predictor = load_predictor(ModelStore(tmp_path / "store"), "b")
    assert predictor.schema.features[2].categories == ("pro", "basic", "plus")
    rows = pa.table({"x1": frame.x1, "n": frame.n, "plan": frame.plan.astype(str)})
    columns, _ = predictor.score_table(rows, proba=True)
    np.testing.assert_allclose(columns["proba_1"].to_numpy(), booster.predict(frame), rtol=1e-12)


def test_a_name_sklearn_only_re_exports_is_refused():
    """sklearn modules re-export operator.itemgetter and friends, which chain to eval: the scan
    must refuse such a name (not scikit-learn's own class), and so must the restricted loader."""
    from mljobs import pickle_scan
    from mljobs.errors import ModelError

    data = b"csklearn.feature_extraction.text\nitemgetter\n(S'x'\ntR."  # itemgetter('x'), named through sklearn
    assert pickle_scan.refused_names(data) == ["sklearn.feature_extraction.text.itemgetter"]
    with pytest.raises(ModelError):
        pickle_scan.load_pickle(data)
    assert pickle_scan.refused_names(b"csklearn.linear_model._logistic\nLogisticRegression\n)R.") == []


def test_a_tracking_address_with_a_password_in_it_is_refused_without_echoing_it():
    from mljobs.errors import UsageError
    from mljobs.mlflow_rest import MlflowRest

    with pytest.raises(UsageError) as refused:
        MlflowRest("https://ann:s3cret@mlflow.example:5000", {})
    assert "s3cret" not in str(refused.value) and "MLFLOW_TRACKING_PASSWORD" in str(refused.value)


def test_credentials_are_not_sent_on_to_another_host_by_a_redirect():
    import http.server
    import threading

    from mljobs.mlflow_rest import MlflowRest

    seen: list[str | None] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(Elsewhere):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{other.server_port}/x")
            self.end_headers()

    first = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (first, other):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        MlflowRest(f"http://127.0.0.1:{first.server_port}", {"MLFLOW_TRACKING_TOKEN": "t0ken"}).request("GET", "/y")
    finally:
        for server in (first, other):
            server.shutdown()
            server.server_close()
    assert seen == ["Bearer t0ken", None]  # the token went to the tracking server, not where it redirected


def test_a_skops_model_outside_the_allow_list_is_refused_unless_trusted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """MLflow's skops format goes through the same allow-list as our own sklearn versions: a
    FunctionTransformer holding copy.copy is refused, and imports with --trust-pickle."""
    import copy

    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    frame, labels = training_frame()
    model = pipeline()
    model.steps.insert(0, ("odd", FunctionTransformer(func=copy.copy)))
    model.fit(frame, labels)
    root = mlflow_folder(tmp_path / "m", model)
    (root / "model.pkl").unlink()
    (root / "model.skops").write_bytes(skops.io.dumps(model))
    mlmodel = (root / "MLmodel").read_text().replace("model.pkl", "model.skops").replace("serialization_format: pickle", "serialization_format: skops")
    (root / "MLmodel").write_text(mlmodel)
    assert run_models(tmp_path, "import", str(root), "--model", "odd") != 0
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the model file is refused: it contains the untrusted type copy.copy" in error and "--trust-pickle" in error
    assert not (tmp_path / "store" / "odd").exists()
    assert run_models(tmp_path, "import", str(root), "--model", "odd", "--trust-pickle") == 0
    predictor = load_predictor(ModelStore(tmp_path / "store"), "odd")
    columns, _ = predictor.score_table(pa.Table.from_pandas(frame, preserve_index=False), proba=True)
    np.testing.assert_allclose(columns["proba_1"].to_numpy(), model.predict_proba(frame)[:, 1], rtol=1e-12)
