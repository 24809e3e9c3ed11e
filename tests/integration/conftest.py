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
from typing import Iterator

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Compose:
    """`docker compose` for one isolated project, as a user would type it.

    A single `serve` answers on `url()` (MLJOBS_PORT); after `start_fleet()` the project runs with
    compose.fleet.yaml too, its replicas publish no port and are reached through the load balancer
    (`url(..., lb=True)`) or one by one at their container address (`replica_url`)."""

    FLEET_FILES = ("compose.yaml", "compose.fleet.yaml")

    def __init__(self, project: str, data_dir: Path):
        self.project, self.data_dir = project, data_dir
        self.port = free_port()
        self.lb_port = free_port()
        self.files: tuple[str, ...] = ("compose.yaml",)
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": project,
            "MLJOBS_DATA_DIR": str(data_dir),
            "MLJOBS_PORT": str(self.port),
            "MLJOBS_LB_PORT": str(self.lb_port),
        }

    @property
    def is_fleet(self) -> bool:
        return self.files == self.FLEET_FILES

    def __call__(self, *args: str, timeout: float = 600, text: bool = True) -> subprocess.CompletedProcess:
        files = [arg for name in self.files for arg in ("-f", str(REPO / name))]
        return subprocess.run(
            ["docker", "compose", "--project-directory", str(REPO), *files, "--profile", "jobs", *args],
            env=self.env, capture_output=True, text=text, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def run(self, service: str, *args: str) -> subprocess.CompletedProcess:
        return self("run", "--rm", "-T", service, *args)

    def url(self, path: str, lb: bool = False) -> str:
        """The single server's URL (MLJOBS_PORT), or the load balancer's (MLJOBS_LB_PORT)."""
        if not lb and self.is_fleet:
            raise AssertionError("a fleet's replicas publish no port: use url(path, lb=True) or replica_url()")
        return f"http://127.0.0.1:{self.lb_port if lb else self.port}{path}"

    def replica_url(self, path: str = "", container: str | None = None) -> str:
        """One replica (the first running one unless named), at its address on the project's network."""
        container = container or self.containers("serve")[0]
        address = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container],
            capture_output=True, text=True, check=True,
        ).stdout.split()[0]
        return f"http://{address}:8080{path}"

    def containers(self, service: str) -> list[str]:
        return self("ps", "-q", service).stdout.split()

    def wait_ready(self, path: str = "/v2/health/ready", deadline_s: float = 60, lb: bool = False,
                   url: str | None = None) -> None:
        url = url or self.url(path, lb)
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # not up yet, or too busy to answer in time
                pass
            time.sleep(0.3)
        raise AssertionError(f"{url} not ready after {deadline_s} s:\n{self('logs').stdout[-3000:]}")

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
        self.files = self.FLEET_FILES  # from here on, every command of this project, as a user would
        up = self("up", "-d", "--scale", f"serve={replicas}", "serve", "lb")
        assert up.returncode == 0, up.stderr[-3000:]
        for container in self.containers("serve"):
            self.wait_ready(url=self.replica_url("/v2/health/ready", container))
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


IMAGES = ("train", "predict", "serve", "lb")


def image(role: str) -> str:
    """A role's image under this test run's own tag (see built_images)."""
    return f"mljobs-{role}:{os.environ.get('MLJOBS_TAG', 'latest')}"


@pytest.fixture(scope="session")
def built_images() -> Iterator[str]:
    """Build the images once per session (cached layers make a rebuild take seconds), under a tag
    of this run's own: MLJOBS_TAG, which compose, the launcher and the DAG all read, so a test run
    never replaces images something else on the engine is using. The tags go at the end."""
    tag = f"test-{secrets.token_hex(4)}"
    os.environ["MLJOBS_TAG"] = tag
    result = subprocess.run(["docker", "compose", "--project-directory", str(REPO), "--profile", "jobs", "build"],
                            capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-5000:]
    yield tag
    subprocess.run(["docker", "rmi", *(f"mljobs-{role}:{tag}" for role in IMAGES)], capture_output=True)


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
