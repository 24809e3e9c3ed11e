"""The example DAGs in a real Airflow (its own environment, as a user's scheduler would be)
running DockerOperator tasks on the real engine: train, gate and promote, score; a bad input
fails the score task with the job's reason in its log; a rerun with nothing new writes nothing."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from mljobs import demo

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from common import cached_venv  # noqa: E402

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = ["apache-airflow==3.3.2", "apache-airflow-providers-docker==4.6.1"]


@pytest.fixture(scope="module")
def airflow(compose, tmp_path_factory):
    """Run `airflow ...` in its own virtual environment (cached between runs), on a fresh
    SQLite database, with the repo's example DAGs and this test's compose project."""
    airflow_bin = cached_venv("airflow", AIRFLOW).parent / "airflow"
    home = tmp_path_factory.mktemp("airflow")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "examples" / "airflow"),
        "COMPOSE_PROJECT_NAME": compose.project,
        "AIRFLOW_VAR_MLJOBS_DATA_DIR": str(compose.data_dir),
        "AIRFLOW_VAR_MLJOBS_MODEL": "nightly",
        "AIRFLOW_VAR_MLJOBS_TRAIN_INPUT": "nightly/train.csv",
        "AIRFLOW_VAR_MLJOBS_SCORE_INPUT": "nightly/new/*.csv",
        # The DAG imports the contract from the mljobs package, as a scheduler with `pip install mljobs` would.
        "PYTHONPATH": str(REPO / "shared"),
    }

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(airflow_bin), *args], env={**env, **(extra or {})}, capture_output=True, text=True, timeout=600)

    assert run("db", "migrate").returncode == 0
    return run


def store(compose) -> dict:
    listing = compose.run("models", "list", "--json")
    return {m["name"]: m for m in json.loads(listing.stdout)}


def score_runs(compose) -> list[Path]:
    return sorted((compose.data_dir / "output").glob("model=nightly/date=*/run=*/_SUCCESS"))


def test_retrain_gate_promote_then_score_on_schedule(compose, airflow):
    data = compose.data_dir / "input" / "nightly"
    (data / "new").mkdir(parents=True)
    pacsv.write_csv(demo.training_table(rows=3000).drop_columns(["customer_id"]), data / "train.csv")

    first = airflow("dags", "test", "mljobs_retrain", "2026-01-01")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert store(compose)["nightly"]["aliases"] == {"latest": "1", "production": "1"}

    # A nightly run on poorer data: published as version 2, but the gate keeps version 1 in production.
    pacsv.write_csv(demo.training_table(rows=3000).select(["plan", "churned"]), data / "train.csv")
    second = airflow("dags", "test", "mljobs_retrain", "2026-01-02")
    assert second.returncode == 0
    assert "kept nightly@production at version 1" in second.stdout + second.stderr
    assert store(compose)["nightly"]["aliases"] == {"latest": "2", "production": "1"}

    empty = airflow("dags", "test", "mljobs_score", "2026-01-02")  # nothing has arrived yet
    assert empty.returncode == 0 and score_runs(compose) == []

    pacsv.write_csv(demo.scoring_table(rows=200, seed=60), data / "new" / "day1.csv")
    scored = airflow("dags", "test", "mljobs_score", "2026-01-03")
    assert scored.returncode == 0, scored.stdout[-3000:]
    [marker] = score_runs(compose)
    assert json.loads(marker.read_text())["rows"] == {"in": 200, "out": 200, "rejected": 0}

    again = airflow("dags", "test", "mljobs_score", "2026-01-04")  # nothing new: no second copy
    assert again.returncode == 0 and score_runs(compose) == [marker]

    records = json.loads(compose.run("models", "runs").stdout)
    by_airflow = [r for r in records if r["started_by"].startswith("airflow:")]
    assert {r["started_by"].split(":")[1] for r in by_airflow} == {"mljobs_retrain", "mljobs_score"}
    assert any(r["job"] == "predict" and r["rows"].get("out") == 200 for r in by_airflow)


def test_a_bad_input_fails_the_score_task_with_the_jobs_reason(compose, airflow):
    if "nightly" not in store(compose):
        assert airflow("dags", "test", "mljobs_retrain", "2026-02-01").returncode == 0
    new = compose.data_dir / "input" / "nightly" / "new"
    new.mkdir(parents=True, exist_ok=True)
    (new / "broken.csv").write_text("age,plan\n30,basic\n")
    failed = airflow("dags", "test", "mljobs_score", "2026-02-02")
    assert failed.returncode != 0
    assert "predict failed: column 'tenure_months': column missing from the input" in failed.stdout + failed.stderr


def test_with_a_signing_key_the_retrain_dag_publishes_a_signed_version(compose, airflow, monkeypatch):
    data = compose.data_dir / "input" / "nightly"
    data.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(demo.training_table(rows=2000).drop_columns(["customer_id"]), data / "train.csv")
    key = secrets.token_hex(32)
    ran = airflow("dags", "test", "mljobs_retrain", "2026-03-01", extra={"MLJOBS_SIGNING_KEY": key, "AIRFLOW_VAR_MLJOBS_MODEL": "signed"})
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    monkeypatch.setitem(compose.env, "MLJOBS_SIGNING_KEY", key)
    shown = compose.run("models", "show", "signed@production", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["signature_checked"] is True, shown.stderr[-2000:]
    monkeypatch.setitem(compose.env, "MLJOBS_SIGNING_KEY", secrets.token_hex(32))  # another deployment's key
    assert compose.run("models", "show", "signed@production", "--json").returncode == 4
