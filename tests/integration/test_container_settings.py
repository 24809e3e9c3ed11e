"""What `docker inspect` says of the containers the project starts, by compose and by the
launcher: non-root, read-only root filesystem, no capabilities, no privilege gain, memory and
CPU and pids limits."""

from __future__ import annotations

import json
import subprocess

import pytest

from mljobs.launcher import cli

pytestmark = pytest.mark.integration


def inspect(container: str) -> dict:
    return json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True).stdout)[0]


def assert_locked_down(container: str) -> None:
    info = inspect(container)
    host, config = info["HostConfig"], info["Config"]
    name = info["Name"]
    assert config["User"] and config["User"].split(":")[0] not in ("", "0", "root"), name
    assert host["ReadonlyRootfs"] is True, name
    assert host["CapDrop"] == ["ALL"], name
    assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"] or []), name
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and (host["PidsLimit"] or 0) > 0, name
    assert not any("docker.sock" in (m.get("Source") or "") for m in info["Mounts"]), name


def test_compose_containers_are_locked_down(compose):
    assert compose.run("train").returncode == 0
    assert compose("up", "-d", "--wait", "serve", "lb").returncode == 0  # --wait: every health check passes
    for service in ("serve", "lb"):
        for container in compose.containers(service):
            assert_locked_down(container)
            assert inspect(container)["State"]["Health"]["Status"] == "healthy", service
    for service in ("train", "predict", "sql", "models"):
        started = compose("run", "-d", "--entrypoint", "sleep", service, "30")
        assert started.returncode == 0, started.stderr
        container = started.stdout.strip().splitlines()[-1]
        try:
            assert_locked_down(container)
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    compose("down", "--timeout", "5")


def test_launcher_containers_are_locked_down(compose, monkeypatch):
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", compose.project)
    if compose.run("models", "show", "demo").returncode != 0:
        assert compose.run("train").returncode == 0
    assert cli.main(["serve", "up", "--replicas", "1", "--port", str(compose.lb_port)]) == 0
    try:
        found = subprocess.run(["docker", "ps", "-q", "--filter", f"label=org.mljobs.project={compose.project}"],
                               capture_output=True, text=True).stdout.split()
        assert len(found) == 2  # one replica and the load balancer
        for container in found:
            assert_locked_down(container)
    finally:
        assert cli.main(["serve", "down"]) == 0
