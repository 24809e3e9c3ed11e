"""Integration fixtures: the real images, a throwaway compose project, and its cleanup.

Every test project gets its own compose project name (so its own volumes and network) and a
data folder in a temp dir; teardown removes everything labelled with that project.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Compose:
    """`docker compose` for one isolated project, as a user would type it."""

    def __init__(self, project: str, data_dir: Path, port: int):
        self.project, self.data_dir, self.port = project, data_dir, port
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": project,
            "MLJOBS_DATA_DIR": str(data_dir),
            "MLJOBS_PORT": str(port),
        }

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "compose", "--project-directory", str(REPO), "--profile", "jobs", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def run(self, service: str, *args: str) -> subprocess.CompletedProcess:
        return self("run", "--rm", "-T", service, *args)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, path: str = "/v2/health/ready", deadline_s: float = 60) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                if requests.get(self.url(path), timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{path} not ready after {deadline_s} s:\n{self('logs').stdout[-3000:]}")

    def down(self) -> None:
        self("down", "--volumes", "--remove-orphans", "--timeout", "5")
        remove_labelled(f"com.docker.compose.project={self.project}")


def remove_labelled(label: str) -> None:
    """Force-remove whatever a test left behind under `label` (containers first, they hold the rest)."""
    for list_cmd, remove_cmd in (
        (["container", "ls", "-aq"], ["container", "rm", "-f"]),
        (["volume", "ls", "-q"], ["volume", "rm", "-f"]),
        (["network", "ls", "-q"], ["network", "rm"]),
    ):
        found = subprocess.run(["docker", *list_cmd, "--filter", f"label={label}"], capture_output=True, text=True)
        if found.stdout.split():
            subprocess.run(["docker", *remove_cmd, *found.stdout.split()], capture_output=True)


@pytest.fixture(scope="session")
def built_images() -> None:
    """Build the three images once per session (cached layers make a rebuild take seconds)."""
    result = subprocess.run(["docker", "compose", "--project-directory", str(REPO), "--profile", "jobs", "build"],
                            capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-5000:]


@pytest.fixture(scope="module")
def compose(built_images, tmp_path_factory) -> Compose:
    data_dir = tmp_path_factory.mktemp("data")
    for sub in ("input", "output"):
        (data_dir / sub).mkdir()
    # The jobs run as uid 10001; the output folder must be writable for it.
    (data_dir / "output").chmod(0o777)
    project = Compose(f"mljobs-test-{secrets.token_hex(4)}", data_dir, free_port())
    yield project
    project.down()
