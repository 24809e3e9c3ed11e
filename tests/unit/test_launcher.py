"""Launcher pieces that need no engine: path mapping, exit messages, clear engine errors."""

from __future__ import annotations

import os

import pytest

from mljobs.launcher import cli
from mljobs.launcher.engine import LauncherError, Project, require_image
from mljobs.launcher.jobs import JobResult, describe, map_paths


def test_host_paths_become_read_only_mounts_and_container_paths(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("x\n1\n")
    args, mounts, user = map_paths(
        ["--input", str(tmp_path / "in" / "a.csv"), "--target", "y", f"--output={tmp_path / 'out'}", "--params", '{"a": 1}'],
        "predict",
    )
    assert args == ["--input", "/data/input/0/a.csv", "--target", "y", "--output", "/data/output", "--params", '{"a": 1}']
    assert mounts[str((tmp_path / "in").resolve())] == {"bind": "/data/input/0", "mode": "ro"}
    assert mounts[str((tmp_path / "out").resolve())] == {"bind": "/data/output", "mode": "rw"}
    assert (tmp_path / "out").is_dir()
    assert user == ("10001:10001" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}")


def test_globs_and_folders_mount_their_folder(tmp_path):
    args, mounts, _ = map_paths(["--input", str(tmp_path / "*.parquet")], "train")
    assert args == ["--input", "/data/input/0/*.parquet"] and str(tmp_path.resolve()) in mounts
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
    assert mounts[str(tmp_path.resolve())] == {"bind": "/data/input/0", "mode": "ro"}
