"""The train and serve images under the SageMaker Python SDK's local mode, which runs them as
SageMaker does (`<image> train`, `<image> serve`, /opt/ml owned by root, the image's default user),
offline: fit -> deploy -> predict -> batch transform, and a failed fit whose reason is ours.

The SDK is not a dependency of the project: it runs in a cached venv of its own (sagemaker[local]<3),
driven by a script; our side of the comparison (the batch path's predictions) runs here."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from mljobs import demo
from mljobs.predictor import load_predictor
from mljobs.store import ModelStore
from tests.integration.conftest import free_port, image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from common import cached_venv  # noqa: E402

pytestmark = pytest.mark.integration

SDK = ["sagemaker[local]<3"]
FEATURES = ["age", "tenure_months", "monthly_charges", "plan", "region", "has_support"]
PAYLOAD_MB = 1  # the transform file is larger: MultiRecord must split it into several requests
TRANSFORM_ROWS = 60_000

# Run by the SDK's venv: one training, one endpoint, one transform, one failing training.
SCRIPT = r'''
import json, sys, tarfile
from sagemaker.deserializers import CSVDeserializer
from sagemaker.estimator import Estimator
from sagemaker.local import LocalSession
from sagemaker.serializers import CSVSerializer

job = json.load(sys.stdin)
session = LocalSession()
session.config = {"local": {"local_code": True, "container_root": job["root"], "serving_port": job["port"]}}
ROLE = "arn:aws:iam::111111111111:role/SageMakerRole"


def estimator(output, **hyperparameters):
    return Estimator(image_uri=job["train_image"], role=ROLE, instance_count=1, instance_type="local",
                     output_path="file://" + output, sagemaker_session=session, hyperparameters=hyperparameters)


found = {}
trained = estimator(job["model_out"], target="churned", drop="customer_id", model="churn")
trained.fit({"train": "file://" + job["train"]})
found["model_data"] = trained.model_data

model = trained.create_model(image_uri=job["serve_image"])
predictor = model.deploy(initial_instance_count=1, instance_type="local",
                         serializer=CSVSerializer(), deserializer=CSVDeserializer())
try:
    found["predicted"] = [row[0] for row in predictor.predict(job["rows_csv"])]
finally:
    predictor.delete_endpoint()

transformer = model.transformer(instance_count=1, instance_type="local", strategy="MultiRecord", assemble_with="Line",
                                accept="text/csv", max_payload=job["payload_mb"], output_path="file://" + job["transform_out"])
transformer.transform("file://" + job["transform_in"], content_type="text/csv", split_type="Line", logs=False)

failing = estimator(job["failed_out"], target="nope")
try:
    failing.fit({"train": "file://" + job["train"]})
    found["failed"] = None
except RuntimeError as exc:
    found["failed"] = str(exc)
with tarfile.open(job["failed_out"] + "/output.tar.gz") as tar:
    found["failure"] = tar.extractfile("failure").read().decode()
print("RESULT " + json.dumps(found))
'''


def csv_rows(table: pa.Table) -> str:
    out = io.BytesIO()
    pacsv.write_csv(table.select(FEATURES), out, pacsv.WriteOptions(include_header=False))
    return out.getvalue().decode().replace('"', "")


def local_mode_containers(root: Path) -> list[str]:
    """The containers local mode's compose projects created: their compose files are under `root`."""
    listed = subprocess.run(["docker", "ps", "-a", "--filter", "label=com.docker.compose.project.working_dir",
                             "--format", '{{.ID}} {{.Label "com.docker.compose.project.working_dir"}}'],
                            capture_output=True, text=True).stdout.split("\n")
    return [line.split(" ", 1)[0] for line in listed if " " in line and line.split(" ", 1)[1].startswith(str(root))]


@pytest.fixture(scope="module")
def local_mode(built_images, tmp_path_factory):
    """Everything the SDK did, run once; its containers and (if it made it) its network removed after."""
    python = cached_venv("sagemaker", SDK)
    work = tmp_path_factory.mktemp("sagemaker")
    for folder in ("train", "transform_in", "model_out", "transform_out", "failed_out", "root"):
        (work / folder).mkdir()
    pacsv.write_csv(demo.training_table(), work / "train" / "train.csv")
    rows = demo.scoring_table(rows=20, seed=14)
    many = demo.scoring_table(rows=TRANSFORM_ROWS, seed=15)
    (work / "transform_in" / "rows.csv").write_text(csv_rows(many))
    config = work / "sagemaker-config.yaml"
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
           "AWS_SECRET_ACCESS_KEY": "dummy-secret", "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config)}
    env.pop("AWS_PROFILE", None)
    job = {"root": str(work / "root"), "port": free_port(), "train_image": image("train"), "serve_image": image("serve"),
           "train": str(work / "train"), "model_out": str(work / "model_out"), "rows_csv": csv_rows(rows),
           "transform_in": str(work / "transform_in"), "transform_out": str(work / "transform_out"),
           "failed_out": str(work / "failed_out"), "payload_mb": PAYLOAD_MB}
    had_network = subprocess.run(["docker", "network", "inspect", "sagemaker-local"], capture_output=True).returncode == 0
    started = time.monotonic()
    try:
        done = subprocess.run([str(python), "-c", SCRIPT], input=json.dumps(job), env=env, cwd=work,
                              capture_output=True, text=True, timeout=900)
        print(f"\nSageMaker local mode: fit, deploy, predict, transform, failed fit in {time.monotonic() - started:.0f} s")
        (work / "sdk.log").write_text(done.stdout + done.stderr)
        result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert done.returncode == 0 and result, f"the SDK failed; its output is in {work / 'sdk.log'}"
        yield work, rows, many, json.loads(result[-1][len("RESULT "):])
    finally:
        containers = local_mode_containers(work / "root")
        if containers:
            subprocess.run(["docker", "rm", "-f", *containers], capture_output=True)
        if not had_network:
            subprocess.run(["docker", "network", "rm", "sagemaker-local"], capture_output=True)


def batch_labels(work: Path, table: pa.Table) -> list[str]:
    """Our batch path's predictions, from the model SageMaker packed into model.tar.gz."""
    unpacked = work / "unpacked"
    if not unpacked.exists():
        with tarfile.open(work / "model_out" / "model.tar.gz") as tar:
            tar.extractall(unpacked, filter="data")
    predictor = load_predictor(ModelStore(unpacked), "churn")
    columns, _ = predictor.score_table(table)
    return [str(v) for v in columns["prediction"].to_pylist()]


def test_fit_deploy_predict_equals_our_batch_predictions(local_mode):
    work, rows, _, found = local_mode
    assert found["model_data"].endswith("model.tar.gz")
    assert found["predicted"] == batch_labels(work, rows)


def test_batch_transform_gives_one_line_per_input_line(local_mode):
    work, _, many, _ = local_mode
    sent = work / "transform_in" / "rows.csv"
    assert sent.stat().st_size > PAYLOAD_MB * 2**20  # so MultiRecord sends it in several requests
    lines = (work / "transform_out" / "rows.csv.out").read_text().split("\n")
    assert lines[-1] == ""  # the SDK ends the last reply with a newline too
    assert lines[:-1] == batch_labels(work, many)


def test_a_failed_fit_reports_our_reason(local_mode):
    _, _, _, found = local_mode
    assert "exited with code: 3" in found["failed"]  # bad input data, the contract's code
    assert found["failure"].startswith("train failed: target column 'nope' is not in the data")
