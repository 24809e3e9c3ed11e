"""The three-node swarm lab itself: nodes, replicas spread over them, overlay DNS between
nodes, a host-mode published port reached from the host, and a teardown that leaves nothing
(after a clean run, after a set-up failing half way, and after the test run was killed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.swarm_lab import SwarmLab, swarm_lab_fixture

pytestmark = pytest.mark.integration

WEB_PORT = 8000
# One image for both services: every node loads it, and loading is the lab's slowest phase.
IMAGE = "python:3.11-slim-bookworm"
STACK = f"""
version: "3.8"
services:
  sleeper:
    image: {IMAGE}
    command: ["sleep", "infinity"]
    stop_grace_period: 1s
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      placement:
        max_replicas_per_node: 1
  web:
    image: {IMAGE}
    command: ["python3", "-m", "http.server", "8000"]
    stop_grace_period: 1s
    ports:
      - target: 8000
        published: ${{WEB_PORT:?}}
        mode: host
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      placement:
        max_replicas_per_node: 1
"""

# From inside one web task: every replica's address behind tasks.web, each fetched over the overlay.
FETCH_EVERY_REPLICA = """
import socket, urllib.request
ips = sorted({a[4][0] for a in socket.getaddrinfo("tasks.web", 8000, proto=socket.IPPROTO_TCP)})
print(len(ips), sum(urllib.request.urlopen(f"http://{ip}:8000/", timeout=5).status == 200 for ip in ips))
"""

swarm = swarm_lab_fixture(images=(IMAGE,))


@pytest.fixture(scope="module")
def stack(swarm: SwarmLab, tmp_path_factory: pytest.TempPathFactory) -> SwarmLab:
    stack_file = tmp_path_factory.mktemp("stack") / "stack.yaml"
    stack_file.write_text(STACK)
    began = time.monotonic()
    swarm.deploy(stack_file, "lab", env={"WEB_PORT": str(WEB_PORT)})
    swarm.wait_tasks("lab_sleeper", 3)
    swarm.wait_tasks("lab_web", 3)
    swarm.timings["deploy"] = time.monotonic() - began
    return swarm


def test_three_nodes_ready(swarm: SwarmLab) -> None:
    nodes = swarm.docker(1, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}").stdout
    assert sorted(nodes.splitlines()) == ["node1 Ready Leader", "node2 Ready ", "node3 Ready "]


def test_replicas_run_on_three_different_nodes(stack: SwarmLab) -> None:
    placed = stack.docker(1, "service", "ps", "--filter", "desired-state=running",
                          "--format", "{{.Node}}", "lab_sleeper").stdout.split()
    assert sorted(placed) == ["node1", "node2", "node3"]


def test_host_reaches_the_published_port_on_every_node(stack: SwarmLab) -> None:
    for node in (1, 2, 3):
        response = requests.get(stack.url(WEB_PORT, "/", node=node), timeout=5)
        assert response.status_code == 200, node


def test_replicas_find_each_other_by_dns_across_nodes(stack: SwarmLab) -> None:
    container = stack.docker(1, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=lab_web").stdout.split()[0]
    fetched = stack.docker(1, "exec", container, "python3", "-c", FETCH_EVERY_REPLICA).stdout.split()
    assert fetched == ["3", "3"]  # three replica addresses, each answered HTTP 200


def test_teardown_leaves_nothing() -> None:
    lab = SwarmLab(nodes=2).start()
    socket, pidfile = lab.node(2).socket, lab.node(2).pidfile
    daemon_pid = int(pidfile.read_text())
    lab.teardown()
    assert lab.leftovers() == []
    assert not any(line.startswith(lab.name) for line in _lines("ip", "netns", "list"))
    assert not any(lab.host_link in line for line in _lines("ip", "-o", "link"))
    assert not Path(f"/proc/{daemon_pid}").exists() and not socket.exists()


class FailsAfterTheDaemons(SwarmLab):
    def _form_swarm(self) -> None:
        raise RuntimeError("set-up failed half way")


def test_a_setup_failing_half_way_leaves_nothing() -> None:
    lab = FailsAfterTheDaemons(nodes=2)
    with pytest.raises(RuntimeError, match="half way"):
        lab.start()
    assert lab.timings["teardown"] > 0 and lab.leftovers() == []


# A lab started by a process that is then SIGKILLed: its daemons and namespaces outlive it.
START_AND_WAIT = """
import time
from tests.integration.swarm_lab import SwarmLab
lab = SwarmLab(nodes=2).start()
print(lab.name, flush=True)
time.sleep(600)
"""


def test_a_lab_whose_test_run_was_killed_is_reclaimed() -> None:
    with subprocess.Popen([sys.executable, "-c", START_AND_WAIT], stdout=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parents[2]) as owner:
        assert owner.stdout is not None
        name = owner.stdout.readline().strip()
        owner.send_signal(signal.SIGKILL)
    orphan = SwarmLab(suffix=name.rsplit("-", 1)[1])
    assert orphan.leftovers()  # its daemons and namespaces outlived the killed run
    SwarmLab.reclaim_abandoned()  # (or another run's lab start, which reclaims too)
    assert orphan.leftovers() == []


def _lines(*command: str) -> list[str]:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
