"""`mljobs models report`: the report role's container writes a host folder as you, and --open
hands the written page to the browser (against the fake Docker client)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mljobs import contract
from mljobs.launcher import cli, reports

from .fake_docker import FakeDockerClient, JobOutcome


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeDockerClient:
    fake = FakeDockerClient(jobs=lambda c: JobOutcome(0, "/data/output/demo-2/index.html\n", "INFO wrote it\n"))
    monkeypatch.setattr(cli, "connect", lambda *a, **k: fake)
    return fake


def test_models_report_runs_the_report_role_writing_a_host_folder_as_you(engine: FakeDockerClient, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    opened: list[str] = []
    monkeypatch.setattr(reports.webbrowser, "open", lambda url: opened.append(url) or True)
    folder = tmp_path / "reports"
    assert cli.main(["models", "report", "demo@production", "--output", str(folder), "--open"]) == 0
    [job] = engine.created
    role = contract.ROLES["report"]
    assert job.image == "mljobs-predict:latest" and job.kwargs["entrypoint"] == list(role.entrypoint)
    assert job.kwargs["command"] == ["demo@production", "--output", "/data/output"]
    binds = {m["Target"]: (m["Source"], m.get("ReadOnly", False)) for m in job.kwargs["mounts"] if m["Type"] == "bind"}
    assert binds == {"/data/output": (str(folder), False)}
    volumes = {m["Target"]: bool(m.get("ReadOnly")) for m in job.kwargs["mounts"] if m["Type"] == "volume"}
    assert volumes == {"/models": True, "/runs": True}
    if os.getuid() != 0:
        assert job.kwargs["user"] == f"{os.getuid()}:{os.getgid()}"
    page = folder / "demo-2" / "index.html"
    assert capsys.readouterr().out.strip() == str(page)
    assert opened == [page.as_uri()]


def test_models_report_needs_a_version_or_all(engine: FakeDockerClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models", "report"]) == 2
    assert "say which report" in capsys.readouterr().err
    assert engine.created == []


def test_a_failed_report_job_is_one_line_and_its_exit_code(engine: FakeDockerClient, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    engine._jobs = lambda c: JobOutcome(4, "", "models failed: model 'nope' does not exist in /models (models: demo)\n")
    assert cli.main(["models", "report", "nope", "--output", str(tmp_path)]) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: report failed (model missing, refused or corrupt, exit 4)") and "'nope' does not exist" in err
