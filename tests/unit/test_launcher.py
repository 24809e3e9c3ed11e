"""Launcher pieces that need no engine: path mapping, exit messages, clear engine errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mljobs.launcher import cli
from mljobs.launcher.engine import LauncherError, Project, require_image
from mljobs.launcher.jobs import Bind, JobResult, describe, map_paths


def test_host_paths_become_read_only_mounts_and_container_paths(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("x\n1\n")
    args, mounts, user = map_paths(
        ["--input", str(tmp_path / "in" / "a.csv"), "--target", "y", f"--output={tmp_path / 'out'}", "--params", '{"a": 1}'],
        "predict",
    )
    assert args == ["--input", "/data/input/0/a.csv", "--target", "y", "--output", "/data/output", "--params", '{"a": 1}']
    assert mounts == {"/data/input/0": Bind(str((tmp_path / "in").resolve()), read_only=True),
                      "/data/output": Bind(str((tmp_path / "out").resolve()), read_only=False)}
    assert (tmp_path / "out").is_dir()
    assert user == ("10001:10001" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}")


def test_globs_and_folders_mount_their_folder(tmp_path):
    args, mounts, _ = map_paths(["--input", str(tmp_path / "*.parquet")], "train")
    assert args == ["--input", "/data/input/0/*.parquet"] and mounts["/data/input/0"].source == str(tmp_path.resolve())
    args, _, _ = map_paths(["--input", str(tmp_path)], "train")
    assert args == ["--input", "/data/input/0"]


def test_a_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(LauncherError, match="no such file or folder") as caught:
        map_paths(["--input", str(tmp_path / "nope.csv")], "train")
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    "code, timed_out, expected",
    [
        (0, False, "predict done"),
        (3, False, "predict failed (bad input data, exit 3): predict failed: row 2, column 'age': bad"),
        (4, False, "predict failed (model missing, refused or corrupt, exit 4): predict failed: row 2, column 'age': bad"),
        (137, True, "predict timed out after 5 s and was killed"),
    ],
)
def test_exit_codes_become_sentences(code, timed_out, expected):
    result = JobResult(code, "INFO starting\npredict failed: row 2, column 'age': bad\n", timed_out)
    assert describe("predict", result, 5) == expected


class FakeImages:
    def get(self, name):
        from docker.errors import ImageNotFound

        raise ImageNotFound(name)


class FakeClient:
    images = FakeImages()


def test_a_missing_image_offers_build():
    with pytest.raises(LauncherError, match="run `mljobs build` first"):
        require_image(FakeClient(), Project().image("train"))


def test_no_engine_is_one_clear_sentence(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert cli.main(["runs"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the Docker engine at unix:///nonexistent/docker.sock" in err and "Traceback" not in err


def test_project_names_match_compose(monkeypatch):
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "team-a")
    project = Project.from_env()
    assert project.volume("models") == "team-a_models" and project.image("serve") == "mljobs-serve:latest"


def test_the_launcher_imports_none_of_the_jobs_stack():
    import subprocess
    import sys

    script = ("import sys, mljobs.launcher.cli; "
              "print([m for m in ('numpy', 'pyarrow', 'pandas', 'lightgbm', 'sklearn', 'flask') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_sql_tables_name_host_files_that_become_mounts(tmp_path):
    (tmp_path / "new.parquet").write_bytes(b"")
    args, mounts, _ = map_paths(["--table", f"new={tmp_path / 'new.parquet'}", "SELECT 1"], "sql")
    assert args == ["--table", "new=/data/input/0/new.parquet", "SELECT 1"]
    assert mounts == {"/data/input/0": Bind(str(tmp_path.resolve()), read_only=True)}


def test_each_path_flag_gets_its_own_mount_even_in_one_folder(tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.parquet").write_bytes(b"")
    args, mounts, _ = map_paths(["--table", f"a={tmp_path / 'a.csv'}", "--table", f"b={tmp_path / 'b.parquet'}",
                                 "--output", str(tmp_path), "SELECT 1"], "sql")
    assert args == ["--table", "a=/data/input/0/a.csv", "--table", "b=/data/input/1/b.parquet", "--output", "/data/output",
                    "SELECT 1"]
    folder = str(tmp_path.resolve())
    assert mounts == {"/data/input/0": Bind(folder, True), "/data/input/1": Bind(folder, True),
                      "/data/output": Bind(folder, False)}


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """An empty docker CLI configuration folder of our own, and no DOCKER_* variables."""
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "docker-config"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder


def add_context(config: Path, name: str, host: str, tls_files: bool = False) -> None:
    """A context as `docker context create NAME --docker host=HOST[,ca=...,cert=...,key=...]` stores it."""
    import hashlib
    import json

    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))
    if tls_files:
        tls = config / "contexts" / "tls" / digest / "docker"
        tls.mkdir(parents=True)
        for file in ("ca.pem", "cert.pem", "key.pem"):
            (tls / file).write_text("not really a certificate")


def test_docker_context_names_the_engine_to_reach(docker_config, tmp_path, monkeypatch):
    from mljobs.launcher.engine import connect

    socket = tmp_path / "elsewhere.sock"
    add_context(docker_config, "elsewhere", f"unix://{socket}")
    monkeypatch.setenv("DOCKER_CONTEXT", "elsewhere")
    with pytest.raises(LauncherError, match=f"cannot reach the Docker engine at unix://{socket} \\(docker context 'elsewhere'\\)"):
        connect()


def test_the_docker_clis_current_context_is_used(docker_config, tmp_path):
    from mljobs.launcher.engine import connect

    socket = tmp_path / "current.sock"
    add_context(docker_config, "current", f"unix://{socket}")
    (docker_config / "config.json").write_text('{"currentContext": "current"}')
    with pytest.raises(LauncherError, match=f"at unix://{socket} \\(docker context 'current'\\)"):
        connect()


def test_a_missing_context_is_a_configuration_error(docker_config, monkeypatch):
    from mljobs.launcher.engine import connect

    monkeypatch.setenv("DOCKER_CONTEXT", "ghost")
    with pytest.raises(LauncherError, match="docker context 'ghost' does not exist") as caught:
        connect()
    assert caught.value.exit_code == 2


def test_a_tls_context_gives_the_client_its_host_and_certificates(docker_config, monkeypatch):
    from mljobs.launcher import engine

    add_context(docker_config, "remote", "tcp://engine.example:2376", tls_files=True)
    monkeypatch.setenv("DOCKER_CONTEXT", "remote")
    made: list[dict] = []

    class RecordingClient:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def ping(self):
            return True

    monkeypatch.setattr(engine.docker, "DockerClient", RecordingClient)
    engine.connect()
    [kwargs] = made
    tls_folder = docker_config / "contexts" / "tls"
    assert kwargs["base_url"] == "tcp://engine.example:2376"
    assert kwargs["tls"].cert[0].startswith(str(tls_folder)) and kwargs["tls"].cert[0].endswith("cert.pem")
    assert kwargs["tls"].ca_cert.endswith("ca.pem") and kwargs["tls"].verify is True


def test_docker_host_wins_over_a_context(docker_config, monkeypatch):
    from mljobs.launcher.engine import connect

    monkeypatch.setenv("DOCKER_CONTEXT", "ghost")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(LauncherError, match="at unix:///nonexistent/docker.sock: is it running"):
        connect()
