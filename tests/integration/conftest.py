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


def free_port_range(count: int) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1."""
    for _ in range(50):
        first = free_port()
        try:
            sockets = []
            for port in range(first, first + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


class Compose:
    """`docker compose` for one isolated project, as a user would type it."""

    REPLICA_PORTS = 6

    def __init__(self, project: str, data_dir: Path):
        self.project, self.data_dir = project, data_dir
        self.port = free_port_range(self.REPLICA_PORTS)
        self.lb_port = free_port()
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": project,
            "MLJOBS_DATA_DIR": str(data_dir),
            "MLJOBS_PORT": str(self.port),
            "MLJOBS_PORT_LAST": str(self.port + self.REPLICA_PORTS - 1),
            "MLJOBS_LB_PORT": str(self.lb_port),
        }

    def __call__(self, *args: str, timeout: float = 600, text: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "compose", "--project-directory", str(REPO), "--profile", "jobs", *args],
            env=self.env, capture_output=True, text=text, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def run(self, service: str, *args: str) -> subprocess.CompletedProcess:
        return self("run", "--rm", "-T", service, *args)

    def url(self, path: str, lb: bool = False) -> str:
        return f"http://127.0.0.1:{self.lb_port if lb else self.port}{path}"

    def containers(self, service: str) -> list[str]:
        return self("ps", "-q", service).stdout.split()

    def wait_ready(self, path: str = "/v2/health/ready", deadline_s: float = 60, lb: bool = False) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                if requests.get(self.url(path, lb), timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # not up yet, or too busy to answer in time
                pass
            time.sleep(0.3)
        raise AssertionError(f"{path} not ready after {deadline_s} s:\n{self('logs').stdout[-3000:]}")

    def copy_store(self, model: str, into: Path) -> Path:
        """A copy of `model`'s folder from the models volume on the host, as a store root."""
        into.mkdir()
        tar = self("run", "--rm", "-T", "--entrypoint", "tar", "models", "-C", "/models", "-c", model, text=False)
        assert tar.returncode == 0, tar.stderr[-2000:]
        subprocess.run(["tar", "-x", "-C", str(into)], input=tar.stdout, check=True)
        return into

    def start_fleet(self, replicas: int = 2) -> Compose:
        """demo trained and promoted to production, `replicas` serve replicas behind nginx, ready."""
        trained = self.run("train", "--promote", "production")
        assert trained.returncode == 0, trained.stderr[-3000:]
        up = self("up", "-d", "--scale", f"serve={replicas}", "serve", "lb")
        assert up.returncode == 0, up.stderr[-3000:]
        self.wait_ready()
        self.wait_ready(lb=True)
        return self

    def down(self) -> None:
        self("down", "--volumes", "--remove-orphans", "--timeout", "5")
        remove_labelled(f"com.docker.compose.project={self.project}")
        remove_labelled(f"org.mljobs.project={self.project}")  # what the launcher made


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
    """Build the images once per session (cached layers make a rebuild take seconds)."""
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
    project = Compose(f"mljobs-test-{secrets.token_hex(4)}", data_dir)
    yield project
    project.down()
