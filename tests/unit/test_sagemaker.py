"""SageMaker's contract, in-process: hyperparameters as the train job's flags, the serve entry's
variables, and /invocations and /execution-parameters as batch transform and endpoints use them."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from mljobs.errors import ModelError, UsageError
from mljobs.sagemaker import hyperparameters, serving, training
from tests.unit.test_serve import ROWS, csv_body

JSONLINES = "application/jsonlines"


@pytest.fixture
def labels(client):
    return client.post("/invocations", json={"dataframe_records": ROWS}).get_json()["predictions"]


# --- hyperparameters.json -> the train job's flags ---------------------------------------------

def test_hyperparameters_become_the_train_jobs_flags():
    flags = hyperparameters.train_arguments({
        "target": "churned", "estimator": '"sklearn.ensemble.RandomForestClassifier"', "params": '{"n_estimators": 5}',
        "valid-fraction": "0.3", "sagemaker_job_name": "ignored", "_tuning_objective_metric": "ignored"})
    assert flags == ["--target", "churned", "--estimator", "sklearn.ensemble.RandomForestClassifier",
                     "--params", '{"n_estimators": 5}', "--valid-fraction", "0.3", "--model", "model"]


@pytest.mark.parametrize("given, says", [
    ({}, "'target' is required"),
    ({"target": "y", "lr": "0.1"}, "unknown hyperparameter(s) lr"),
])
def test_bad_hyperparameters_are_a_usage_error(given, says):
    with pytest.raises(UsageError, match=says.replace("(", r"\(").replace(")", r"\)")):
        hyperparameters.train_arguments(given)


def test_a_failure_before_the_job_lands_in_the_failure_file(tmp_path: Path):
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"target": "churned"}))
    assert training.train(tmp_path) == 2  # no train channel
    assert (tmp_path / "output" / "failure").read_text().startswith("train failed: there is no 'train' channel")


# --- the serve entry's variables -----------------------------------------------------------------

def test_the_serve_entry_maps_sagemakers_variables(demo_store: Path):
    name = serving.model_name(demo_store / "models")
    env = serving.server_environment({"SAGEMAKER_BIND_TO_PORT": "9123", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "2"},
                                     demo_store / "models", name)
    assert name == "demo"
    assert env["MLJOBS_PORT"] == "9123" and env["MLJOBS_MODEL"] == "demo" and env["MLJOBS_STORE"] == ""
    assert env["MLJOBS_MODELS_DIR"] == str(demo_store / "models") and env["MLJOBS_MAX_BODY_BYTES"] == str(2 << 20)
    assert serving.server_environment({}, demo_store, "demo")["MLJOBS_PORT"] == "8080"


def test_a_model_folder_without_exactly_one_model_is_refused(tmp_path: Path):
    with pytest.raises(ModelError, match="exactly one model"):
        serving.model_name(tmp_path)


# --- /invocations and /execution-parameters ------------------------------------------------------

def test_csv_without_header_and_every_accept(client, labels):
    body = csv_body(ROWS, header=False)
    as_json = client.post("/invocations", data=body, content_type="text/csv",
                          headers={"X-Amzn-SageMaker-Custom-Attributes": "trace=1"})
    assert as_json.status_code == 200 and as_json.get_json() == {"predictions": labels}
    as_csv = client.post("/invocations", data=body, content_type="text/csv", headers={"Accept": "text/csv"})
    assert as_csv.text == "".join(f"{label}\n" for label in labels)
    as_lines = client.post("/invocations", data=body, content_type="text/csv", headers={"Accept": JSONLINES})
    assert as_lines.content_type == JSONLINES
    assert [json.loads(line)["prediction"] for line in as_lines.text.splitlines()] == labels


def test_json_lines_in(client, labels):
    body = "\n".join(json.dumps(r) for r in ROWS[:2]) + "\n" + json.dumps(list(ROWS[2].values())) + "\n"
    reply = client.post("/invocations", data=body, content_type=JSONLINES, headers={"Accept": "application/json"})
    assert reply.status_code == 200 and reply.get_json()["predictions"] == labels[:3]


def test_batch_transform_replies_in_kind_without_the_last_newline(client, labels, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BATCH", "True")
    reply = client.post("/invocations", data=csv_body(ROWS, header=False), content_type="text/csv")
    assert reply.content_type.startswith("text/csv") and reply.text == "\n".join(labels)
    lines = client.post("/invocations", data="\n".join(json.dumps(r) for r in ROWS), content_type=JSONLINES)
    assert len(lines.text.splitlines()) == len(ROWS) and not lines.text.endswith("\n")


def test_execution_parameters(client, monkeypatch):
    monkeypatch.setenv("MLJOBS_WORKERS", "3")
    monkeypatch.delenv("MLJOBS_THREADS", raising=False)
    monkeypatch.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "2")
    reply = client.get("/execution-parameters")
    assert reply.get_json() == {"MaxConcurrentTransforms": 3, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 2}
    monkeypatch.delenv("SAGEMAKER_MAX_PAYLOAD_IN_MB")
    assert client.get("/execution-parameters").get_json()["MaxPayloadInMB"] == 6


def test_ping_answers_fast(client):
    assert client.get("/ping").status_code == 200


def test_a_channel_behind_a_closed_folder_is_not_readable_by_the_job():
    from mljobs.sagemaker.privileges import readable_by_others

    base = Path(tempfile.mkdtemp())  # under /tmp, which others may search (pytest's tmp_path is private)
    try:
        channel = base / "data" / "train"
        channel.mkdir(parents=True)
        (channel / "a.csv").write_text("x\n")
        (channel / "a.csv").chmod(0o644)
        for folder in (base, base / "data", channel):
            folder.chmod(0o755)
        assert readable_by_others(channel)
        (base / "data").chmod(0o700)  # as local mode copies its data folder: mkdtemp's mode
        assert not readable_by_others(channel)
    finally:
        shutil.rmtree(base)


def test_a_failed_drop_to_the_job_user_is_a_clear_error_not_a_traceback(monkeypatch):
    import sys

    from mljobs.errors import UsageError
    from mljobs.sagemaker import training

    def cannot_drop():
        raise PermissionError("no CAP_SETUID")

    monkeypatch.setattr(training, "is_root", lambda: True)
    monkeypatch.setattr(training, "drop_privileges", cannot_drop)
    with pytest.raises(UsageError, match="could not be started as uid 10001"):
        training.run_job([sys.executable, "-c", "pass"])
