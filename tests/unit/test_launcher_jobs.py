"""One-shot job containers started by `mljobs train|predict|sql|models|runs`, against a fake Docker
client: the mounts each flag gets, the container's locked-down settings, and docker errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from docker.errors import APIError, DockerException

from mljobs.launcher import cli

from .fake_docker import FakeContainer, FakeDockerClient, JobOutcome


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeDockerClient:
    fake = FakeDockerClient()
    monkeypatch.setattr(cli, "connect", lambda *a, **k: fake)
    for name in ("COMPOSE_PROJECT_NAME", "MLJOBS_TAG", "MLJOBS_SIGNING_KEY", "MLJOBS_SIGNING_KEY_FILE", "MLJOBS_PIDS",
                 "MLJOBS_CPUS", "MLJOBS_MEMORY"):
        monkeypatch.delenv(name, raising=False)
    return fake


def the_job(engine: FakeDockerClient) -> FakeContainer:
    [container] = engine.created
    return container


def host_path_of(container: FakeContainer, inside: str) -> tuple[Path, bool]:
    """Where a container path the job was given lives on the host, through the longest mount."""
    mounts = container.mounts()
    holders = [t for t in mounts if inside == t or inside.startswith(t + "/")]
    assert holders, f"{inside} is under no mount of the job ({sorted(mounts)})"
    target = max(holders, key=len)
    source, read_only = mounts[target]
    return Path(source) / inside[len(target):].lstrip("/"), read_only


def test_two_tables_in_one_folder_each_reach_the_job(engine, tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    out = tmp_path / "out"
    code = cli.main(["sql", "--table", f"a={tmp_path / 'a.csv'}", "--table", f"b={tmp_path / 'b.parquet'}",
                     "--output", str(out), "SELECT * FROM a JOIN b USING (x)"])
    assert code == 0
    job = the_job(engine)
    tables = [arg.split("=", 1)[1] for arg in job.kwargs["command"] if "=" in arg and arg.startswith(("a=", "b="))]
    assert len(tables) == 2
    for inside, name in zip(tables, ("a.csv", "b.parquet")):
        on_host, read_only = host_path_of(job, inside)
        assert on_host == (tmp_path / name).resolve() and on_host.is_file() and read_only


def test_an_input_beside_the_output_stays_read_only(engine, tmp_path):
    (tmp_path / "new.csv").write_text("x\n1\n")
    code = cli.main(["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path)])
    assert code == 0
    job = the_job(engine)
    command = job.kwargs["command"]
    given_input = command[command.index("--input") + 1]
    on_host, read_only = host_path_of(job, given_input)
    assert on_host == (tmp_path / "new.csv").resolve() and read_only
    assert given_input != "/data/output/new.csv"
    output_on_host, output_read_only = host_path_of(job, command[command.index("--output") + 1])
    assert output_on_host == tmp_path.resolve() and not output_read_only


def test_the_job_container_is_locked_down_and_removed(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("MLJOBS_SIGNING_KEY", "k" * 32)
    (tmp_path / "new.csv").write_text("x\n1\n")
    code = cli.main(["predict", "--cpus", "1.5", "--memory", "3g", "--input", str(tmp_path / "new.csv"),
                     "--output", str(tmp_path / "out")])
    assert code == 0
    job = the_job(engine)
    settings = job.kwargs
    assert job.image == "mljobs-predict:latest"
    assert settings["user"] == ("10001:10001" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}")
    assert settings["read_only"] is True and settings["cap_drop"] == ["ALL"]
    assert settings["security_opt"] == ["no-new-privileges:true"] and settings["network_disabled"] is True
    assert settings["nano_cpus"] == 1_500_000_000 and settings["mem_limit"] == "3g" and settings["pids_limit"] == 512
    assert settings["labels"] == {"org.mljobs.managed": "true", "org.mljobs.project": "mljobs", "org.mljobs.role": "predict"}
    assert job.environment == {"MLJOBS_STARTED_BY": "mljobs", "MLJOBS_MODEL": "demo", "MLJOBS_SIGNING_KEY": "k" * 32}
    assert job.mounts()["/models"] == ("mljobs_models", True) and job.mounts()["/runs"] == ("mljobs_runs", False)
    assert job.removed and (tmp_path / "out").is_dir()


def test_training_writes_the_store_as_the_job_user(engine, tmp_path):
    (tmp_path / "t.csv").write_text("x,y\n1,a\n")
    assert cli.main(["train", "--input", str(tmp_path / "t.csv"), "--target", "y"]) == 0
    job = the_job(engine)
    assert job.image == "mljobs-train:latest" and job.kwargs["user"] == "10001:10001"
    assert job.mounts()["/models"] == ("mljobs_models", False)
    assert "MLJOBS_SIGNING_KEY" not in job.environment


def test_the_store_volumes_are_created_with_compose_labels(engine, tmp_path):
    (tmp_path / "t.csv").write_text("x,y\n1,a\n")
    assert cli.main(["train", "--input", str(tmp_path / "t.csv"), "--target", "y"]) == 0
    assert engine.volumes.by_name["mljobs_models"].labels["com.docker.compose.volume"] == "models"
    assert engine.volumes.by_name["mljobs_runs"].labels["com.docker.compose.project"] == "mljobs"


def test_the_job_exit_code_and_reason_reach_the_user(engine, tmp_path, capsys):
    engine._jobs = lambda c: JobOutcome(3, "", "INFO reading\npredict failed: row 2, column 'age': not a number\n")
    (tmp_path / "new.csv").write_text("x\n1\n")
    assert cli.main(["predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out")]) == 3
    assert "predict failed (bad input data, exit 3): predict failed: row 2, column 'age': not a number" in capsys.readouterr().err


def test_runs_reads_only_the_store_commands_standard_output(engine, capsys):
    records = [{"run_id": "r1", "job": "train", "status": "succeeded", "host": "somewhere", "started": "2026-01-01"}]
    engine._jobs = lambda c: JobOutcome(0, json.dumps(records) + "\n", "2026-01-01 INFO a log line on stderr\n")
    assert cli.main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == records
    job = the_job(engine)
    assert job.kwargs["entrypoint"] == ["python", "-m", "mljobs.jobs.models"] and job.kwargs["command"] == ["runs"]


@pytest.mark.parametrize("error", [
    APIError("500 Server Error", explanation="mount denied: the path is not shared from the host"),
    DockerException("Error while fetching server API version: connection reset"),
], ids=["APIError", "DockerException"])
def test_docker_errors_are_one_line_not_a_traceback(engine, tmp_path, monkeypatch, capsys, error):
    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(engine.containers, "create", refuse)
    (tmp_path / "t.csv").write_text("x,y\n1,a\n")
    assert cli.main(["train", "--input", str(tmp_path / "t.csv"), "--target", "y"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert ("mount denied" if isinstance(error, APIError) else "connection reset") in err


def test_a_bad_signing_key_is_one_line(engine, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLJOBS_SIGNING_KEY", "short")
    (tmp_path / "t.csv").write_text("x,y\n1,a\n")
    assert cli.main(["train", "--input", str(tmp_path / "t.csv"), "--target", "y"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "signing key is too short" in err
