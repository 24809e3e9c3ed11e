"""The serving fleet and a batch job on a real three-node Docker Swarm (issue #16's "Done means").

One lab (tests/integration/swarm_lab.py) and one deployment of deploy/swarm/stack.yaml, exactly
as the README's "Running on a cluster" deploys it, are shared by every test of this module; the
tests run in file order, the disruptive ones (rolling update, drain) after those that need the
first placement. The model store is a host folder every node sees, filled with two signed
versions of the demo model trained by compose; the signing key reaches the replicas as a Docker
secret. Each replica is told apart from the client side by its own /metrics, read from inside
its container on its node (nginx's log does not name the upstream). The last tests run batch
jobs on the swarm through the launcher (its swarm path: shared/mljobs/launcher/swarm.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pyarrow.parquet as pq
import pytest
import requests

from mljobs.jobs import models as models_job
from mljobs.launcher import cli
from mljobs.launcher.engine import Project
from mljobs.launcher.swarm import run_service_job, service_spec
from mljobs.runs import RunLog
from tests.fault_table import record
from tests.integration.conftest import REPO, Compose, free_port, image
from tests.integration.load import Load
from tests.integration.swarm_lab import SwarmLab, swarm_lab_fixture
from tests.unit.test_serve import GOOD

pytestmark = pytest.mark.integration

STACK = "mljobs"  # the README's stack name
SERVE, LB = f"{STACK}_serve", f"{STACK}_lb"
ROLES_ON_THE_CLUSTER = ("serve", "lb", "predict")
WORKERS = 2  # gunicorn workers per replica (the stack's default)
# Run inside a serve container: GET a path of its own server, print the body.
FETCH = ("import sys, urllib.request; "
         "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8080' + sys.argv[1], timeout=5).read().decode())")

swarm = swarm_lab_fixture(needs=("built_images",))


@pytest.fixture(scope="module")
def loading(swarm: SwarmLab) -> Iterator[Callable[[], None]]:
    """The images (this run's tag) going into every node while the models train; call to wait."""
    failed: list[BaseException] = []

    def load() -> None:
        try:
            swarm.load_images([image(role) for role in ROLES_ON_THE_CLUSTER])
        except BaseException as error:  # re-raised in the test's thread by done()
            failed.append(error)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()

    def done() -> None:
        loader.join()
        if failed:
            raise failed[0]

    yield done
    loader.join()  # never tear the lab down under a running `docker load`


@dataclass(frozen=True)
class Store:
    """The shared store and what was scored on one host, for comparison."""

    models: Path  # MLJOBS_STORE_DIR: what every node mounts as /models
    runs: Path  # MLJOBS_RUNS_DIR: what every node mounts as /runs
    key: str
    key_file: Path
    new_rows: Path  # the demo's rows to score, a host file every node sees
    host_predictions: Path  # predictions.parquet of the same job run by compose on the host engine


@pytest.fixture(scope="module")
def store(compose: Compose, loading: Callable[[], None], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """demo:1 (production) and demo:2, signed, trained by compose and copied to a host folder."""
    key = secrets.token_hex(32)
    compose.env["MLJOBS_SIGNING_KEY"] = key
    shutil.copy(REPO / "data" / "input" / "new.csv", compose.data_dir / "input" / "new.csv")
    for args in (("--promote", "production"), ("--seed", "7")):
        trained = compose.run("train", *args)
        assert trained.returncode == 0, trained.stderr[-3000:]
    scored = compose.run("predict", "--model", "demo:1", "--input", "/data/input/new.csv", "--proba")
    assert scored.returncode == 0, scored.stderr[-3000:]
    [host_predictions] = (compose.data_dir / "output").glob("model=demo/date=*/run=*/predictions.parquet")
    root = tmp_path_factory.mktemp("cluster")
    key_file = root / "signing.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    models = compose.copy_store("demo", root / "models")
    (root / "runs").mkdir()
    yield Store(models, root / "runs", key, key_file, compose.data_dir / "input" / "new.csv", host_predictions)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def fleet(swarm: SwarmLab, loading: Callable[[], None], store: Store) -> Iterator[Fleet]:
    """The stack deployed as the README says, three serve replicas and nginx healthy."""
    loading()
    began = time.monotonic()
    lb_port = free_port()
    swarm.deploy(REPO / "deploy" / "swarm" / "stack.yaml", STACK, env={
        "MLJOBS_STORE_DIR": str(store.models), "MLJOBS_SIGNING_KEY_FILE": str(store.key_file),
        "MLJOBS_RUNS_DIR": str(store.runs), "MLJOBS_LB_PORT": str(lb_port), "MLJOBS_REPLICAS": "3",
        "MLJOBS_TAG": os.environ.get("MLJOBS_TAG", "latest"),  # this run's images (built_images sets it)
    })
    swarm.wait_tasks(SERVE, 3, timeout=120)
    swarm.wait_tasks(LB, 1, timeout=60)
    fleet = Fleet(swarm, store, lb_port)
    fleet.wait_answering(60)
    swarm.timings["stack up"] = time.monotonic() - began
    yield fleet
    swarm.docker(1, "stack", "rm", STACK, check=False)  # the lab's teardown removes the rest


class Fleet:
    """The deployed stack, seen from the host and from inside each node."""

    def __init__(self, lab: SwarmLab, store: Store, lb_port: int):
        self.lab, self.store, self.lb_port = lab, store, lb_port

    def url(self, path: str) -> str:
        return self.lab.url(self.lb_port, path)

    def wait_answering(self, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                if requests.post(self.url("/predict"), json=GOOD, timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"nothing answers through nginx after {deadline_s} s:\n"
                             + self.lab.docker(1, "service", "logs", "--tail", "50", LB, check=False).stdout[-3000:])

    def containers(self, service: str) -> list[tuple[int, str]]:
        """(node, container id) of every running container of `service`, on every node."""
        return [(node.index, cid) for node in self.lab.nodes
                for cid in self.lab.docker(node.index, "ps", "-q", "--filter",
                                           f"label=com.docker.swarm.service.name={service}").stdout.split()]

    def replica_metrics(self) -> dict[tuple[int, str], str]:
        """Each serve replica's /metrics, read inside its container, all replicas at once."""
        found: dict[tuple[int, str], str] = {}

        def read(node: int, cid: str) -> None:
            found[(node, cid)] = self.lab.docker(node, "exec", cid, "python", "-c", FETCH, "/metrics", timeout=30).stdout

        threads = [threading.Thread(target=read, args=replica) for replica in self.containers(SERVE)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return found

    def inspect(self, node: int, cid: str, template: str) -> str:
        return self.lab.docker(node, "inspect", "-f", template, cid).stdout.strip()


def samples(metrics: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Prometheus text: the labels and value of each sample of `name`."""
    found = []
    for match in re.finditer(rf"^{name}\{{(.*?)\}} (\S+)$", metrics, re.MULTILINE):
        found.append((dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))), float(match.group(2))))
    return found


def predictions_answered(metrics: str) -> float:
    return sum(value for labels, value in samples(metrics, "mljobs_requests_total")
               if labels.get("route") == "/predict" and labels.get("code") == "200")


def versions_served(metrics: str) -> dict[str, str]:
    """The model version each live gunicorn worker of a replica serves, by worker pid."""
    return {labels["pid"]: labels["version"] for labels, value in samples(metrics, "mljobs_model_info") if value == 1}


# ---- placement and load balancing ----------------------------------------------------------

def test_replicas_run_on_three_different_nodes(fleet: Fleet) -> None:
    assert sorted(fleet.lab.tasks(SERVE)) == ["node1", "node2", "node3"]
    assert fleet.lab.tasks(LB) == ["node1"]  # on the manager, its port published there


def test_requests_through_nginx_are_answered_by_all_three_replicas(fleet: Fleet) -> None:
    before = {replica: predictions_answered(text) for replica, text in fleet.replica_metrics().items()}
    sent = 60
    for _ in range(sent):
        reply = requests.post(fleet.url("/predict"), json=GOOD, timeout=10)
        assert reply.status_code == 200 and reply.headers["X-Model-Version"] == "1"
    after = {replica: predictions_answered(text) for replica, text in fleet.replica_metrics().items()}
    answered = {node: after[(node, cid)] - before[(node, cid)] for node, cid in after}
    print(f"\n/predict answered per node, of {sent} through nginx: {answered}")
    assert sorted(answered) == [1, 2, 3] and all(n > 0 for n in answered.values()), answered
    assert sum(answered.values()) == sent


# ---- promotion ---------------------------------------------------------------------------

def test_promote_reaches_every_worker_of_every_replica_within_10_s(fleet: Fleet, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    replicas = fleet.replica_metrics()
    assert all(set(versions_served(text).values()) == {"1"} for text in replicas.values()), replicas
    monkeypatch.setenv("MLJOBS_SIGNING_KEY", fleet.store.key)
    promoted_at = time.monotonic()
    code = models_job.main(["--models-dir", str(fleet.store.models), "--runs-dir", str(tmp_path),
                            "promote", "demo", "2"])
    assert code == 0
    behind = replicas
    while time.monotonic() - promoted_at < 10:
        served = {replica: versions_served(text) for replica, text in fleet.replica_metrics().items()}
        behind = {replica: workers for replica, workers in served.items()
                  if len(workers) != WORKERS or set(workers.values()) != {"2"}}
        if not behind:
            break
        time.sleep(0.5)
    took = time.monotonic() - promoted_at
    print(f"\nmodels promote demo 2: every worker of every replica on it after {took:.1f} s")
    record("models promote on a 3-node swarm: replicas not on it after 10 s", len(replicas), "replicas",
           "on the old version", len(behind))
    assert not behind, behind
    versions = {requests.post(fleet.url("/predict"), json=GOOD, timeout=10).headers["X-Model-Version"] for _ in range(12)}
    assert versions == {"2"}


# ---- what Swarm enforces -------------------------------------------------------------------

def test_a_serve_task_is_locked_down_as_the_contract_says(fleet: Fleet) -> None:
    node, cid = fleet.containers(SERVE)[0]
    seen = {
        "user": fleet.inspect(node, cid, "{{.Config.User}}"),
        "read-only root": fleet.inspect(node, cid, "{{.HostConfig.ReadonlyRootfs}}"),
        "cap drop": fleet.inspect(node, cid, "{{.HostConfig.CapDrop}}"),
        "memory": fleet.inspect(node, cid, "{{.HostConfig.Memory}}"),
        "cpus": fleet.inspect(node, cid, "{{.HostConfig.NanoCpus}}"),
        "pids": fleet.inspect(node, cid, "{{.HostConfig.PidsLimit}}"),
        "/tmp": fleet.inspect(node, cid, '{{range .Mounts}}{{if eq .Destination "/tmp"}}{{.Type}}{{end}}{{end}}'),
        "/models writable": fleet.inspect(node, cid, '{{range .Mounts}}{{if eq .Destination "/models"}}{{.RW}}{{end}}{{end}}'),
        "security opt": fleet.inspect(node, cid, "{{.HostConfig.SecurityOpt}}"),
    }
    print(f"\nserve task on node{node}, docker inspect: {seen}")
    assert seen["user"] == "10001:10001"
    assert seen["read-only root"] == "true" and seen["cap drop"] == "[ALL]"
    assert seen["memory"] == str(2 << 30) and seen["cpus"] == str(2 * 10**9) and seen["pids"] == "512"
    assert seen["/tmp"] == "tmpfs" and seen["/models writable"] == "false"
    # What Swarm cannot set on a service (the README says so): no-new-privileges.
    assert "no-new-privileges" not in seen["security opt"]


def test_the_load_balancer_is_healthy_and_never_restarted(fleet: Fleet) -> None:
    [(node, cid)] = fleet.containers(LB)
    end = time.monotonic() + 40  # its first checks run 10 s apart
    while (health := fleet.inspect(node, cid, "{{.State.Health.Status}}")) == "starting" and time.monotonic() < end:
        time.sleep(1)
    assert health == "healthy", fleet.inspect(node, cid, "{{json .State.Health}}")
    history = fleet.lab.docker(1, "service", "ps", "--format", "{{.CurrentState}} {{.Error}}", LB).stdout.splitlines()
    assert len(history) == 1, history  # one task since the deploy: Swarm never killed it as unhealthy


# ---- rolling update and drain, under load --------------------------------------------------

def test_rolling_image_update_under_load_fails_no_request(fleet: Fleet) -> None:
    next_image = image("serve") + "-rollout"  # the same image under a second tag
    for node in fleet.lab.nodes:  # the "new" image on every node, as a registry or docker load would put it
        fleet.lab.docker(node.index, "tag", image("serve"), next_image)
    began = time.monotonic()
    with Load(fleet.url("/predict"), threads=3, max_seconds=300) as load:
        time.sleep(1)
        fleet.lab.docker(1, "service", "update", "--image", next_image, SERVE, timeout=300)  # the README's command
        # The command returns once the tasks converged; the update ends after its last monitor period.
        end = time.monotonic() + 60
        while (state := update_state(fleet)) == "updating" and time.monotonic() < end:
            time.sleep(1)
    took = time.monotonic() - began
    print(f"\nrolling update: {took:.0f} s, {load.sent} requests, statuses {dict(load.statuses)}, errors {load.errors[:5]}")
    record("rolling `docker service update --image` on a 3-node swarm, through nginx", load.sent, "requests",
           "failed", load.failures())
    assert load.failures() == 0, (load.statuses, load.errors[:5])
    assert sum(load.statuses.values()) > 50
    assert state == "completed"  # not rolled back
    images = fleet.lab.docker(1, "service", "ps", "--filter", "desired-state=running", "--format", "{{.Image}}",
                              SERVE).stdout.split()
    assert images == [next_image] * 3
    # Where the new replicas landed: start-first places each before the old one stops, so two may
    # now share a node (Swarm does not rebalance); printed, not asserted.
    print(f"replicas after the update on {sorted(fleet.lab.tasks(SERVE))}")


def update_state(fleet: Fleet) -> str:
    return fleet.lab.docker(1, "service", "inspect", "-f", "{{.UpdateStatus.State}}", SERVE).stdout.strip()


def test_draining_a_worker_under_load_fails_no_request(fleet: Fleet) -> None:
    before = fleet.lab.tasks(SERVE)
    # The worker with the most replicas (the rolling update may have put two on one node).
    worker = max(("node2", "node3"), key=before.count)
    assert before.count(worker) > 0, before
    began = time.monotonic()
    try:
        with Load(fleet.url("/predict"), threads=3, max_seconds=180) as load:
            time.sleep(1)
            fleet.lab.docker(1, "node", "update", "--availability", "drain", worker)
            end = time.monotonic() + 120
            while ((placed := fleet.lab.tasks(SERVE)).count(worker) or len(placed) != 3) and time.monotonic() < end:
                time.sleep(0.5)
            time.sleep(3)  # and a few more seconds of requests to the replicas that took over
    finally:
        fleet.lab.docker(1, "node", "update", "--availability", "active", worker)
    took = time.monotonic() - began
    print(f"\ndrain of {worker} (replicas on {sorted(before)}): {took:.0f} s, {load.sent} requests, "
          f"statuses {dict(load.statuses)}, errors {load.errors[:5]}, replicas now on {sorted(placed)}")
    record("worker node drained on a 3-node swarm, through nginx", load.sent, "requests", "failed", load.failures())
    assert worker not in placed and len(placed) == 3, placed
    assert load.failures() == 0, (load.statuses, load.errors[:5])
    assert sum(load.statuses.values()) > 20


# ---- a batch job on the cluster ------------------------------------------------------------

def test_batch_predict_as_a_swarm_job_scores_as_on_one_host(fleet: Fleet, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    runs, output = tmp_path / "runs", tmp_path / "scores"
    for folder, mode in ((runs, 0o1777), (output, 0o777)):  # the job writes them as the image's user
        folder.mkdir()
        folder.chmod(mode)
    monkeypatch.setenv("DOCKER_HOST", fleet.lab.docker_host(1))
    monkeypatch.setenv("MLJOBS_STORE_DIR", str(fleet.store.models))
    monkeypatch.setenv("MLJOBS_RUNS_DIR", str(runs))
    monkeypatch.setenv("MLJOBS_SIGNING_KEY", fleet.store.key)
    began = time.monotonic()
    code = cli.main(["predict", "--model", "demo:1", "--input", str(fleet.store.new_rows), "--output", str(output),
                     "--proba"])
    took = time.monotonic() - began
    assert code == 0
    [scored] = output.glob("model=demo/date=*/run=*/predictions.parquet")
    on_swarm, on_host = pq.read_table(scored), pq.read_table(fleet.store.host_predictions)
    differing = sum(a != b for a, b in zip(on_swarm.to_pylist(), on_host.to_pylist()))
    print(f"\npredict as a swarm job: {took:.1f} s, {on_swarm.num_rows} rows, {differing} differ from one host's")
    record("batch predict as a swarm job vs the same job on one host", on_host.num_rows, "rows", "differing", differing)
    assert on_swarm.num_rows == on_host.num_rows == 1000
    assert on_swarm.equals(on_host)
    assert list(output.rglob(".*")) == []  # committed as on one host: no staging folder left
    [run] = RunLog(runs).records()  # in the shared run-record folder, as every node sees it
    assert (run["job"], run["status"], run["model"].get("version"), run["rows"].get("out")) == (
        "predict", "succeeded", "1", 1000), run
    left = fleet.lab.docker(1, "service", "ls", "-q", "--filter", "label=org.mljobs.role=predict").stdout.split()
    assert left == []  # the job's service is removed once its exit code is collected


def test_a_failing_swarm_job_reports_its_exit_code(fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    runs, output = tmp_path / "runs", tmp_path / "scores"
    for folder, mode in ((runs, 0o1777), (output, 0o777)):
        folder.mkdir()
        folder.chmod(mode)
    monkeypatch.setenv("DOCKER_HOST", fleet.lab.docker_host(1))
    monkeypatch.setenv("MLJOBS_STORE_DIR", str(fleet.store.models))
    monkeypatch.setenv("MLJOBS_RUNS_DIR", str(runs))
    code = cli.main(["predict", "--model", "nosuch", "--input", str(fleet.store.new_rows), "--output", str(output)])
    assert code == 4  # model missing
    said = capsys.readouterr()
    assert "nosuch" in said.out + said.err
    assert list(output.iterdir()) == []
    [run] = RunLog(runs).records()
    assert (run["status"], run["exit_code"]) == ("failed", 4), run


# From inside a job: can it open a connection to the swarm manager? (It must not: jobs have no network.)
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 2377), timeout=3).close()
    print("reached")
except OSError as error:
    print("unreachable:", error)
"""


def test_a_swarm_job_has_no_network(swarm: SwarmLab, loading: Callable[[], None], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    loading()
    monkeypatch.setenv("MLJOBS_STORE_DIR", str(tmp_path))
    monkeypatch.setenv("MLJOBS_RUNS_DIR", str(tmp_path))
    spec = service_spec(Project.from_env(), "predict", [swarm.node(1).address], [], None, None, None, "test")
    spec["command"] = ["python", "-c", PROBE]  # the predict job's container, running the probe instead
    code, stderr, stdout = run_probe(swarm, spec)
    assert code == 0, stderr
    assert stdout.startswith("unreachable"), stdout
    left = swarm.docker(1, "network", "ls", "-q", "--filter", "label=org.mljobs.role=predict").stdout.split()
    assert left == []  # its network goes with it


def run_probe(swarm: SwarmLab, spec: dict[str, Any]) -> tuple[int, str, str]:
    """Run a job service on the lab's manager: (exit code, stderr, stdout)."""
    client = docker.DockerClient(base_url=swarm.docker_host(1))
    try:
        code, stderr, stdout, _ = run_service_job(client, spec, lambda line: None, timeout=120)
    finally:
        client.close()
    return code, stderr, stdout


# From inside a job: which signing-key variables it has, and the digest of the key it reads.
KEY_PROBE = """
import hashlib, os
from mljobs.signing import signing_key
print(sorted(k for k in os.environ if k.startswith("MLJOBS_SIGNING")), hashlib.sha256(signing_key()).hexdigest())
"""


def test_a_swarm_job_gets_the_signing_key_as_a_secret(swarm: SwarmLab, loading: Callable[[], None], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The key never sits in the service's environment, which `docker service inspect` shows."""
    loading()
    key = secrets.token_hex(32)
    monkeypatch.setenv("MLJOBS_SIGNING_KEY", key)  # the key on the launcher's host
    monkeypatch.setenv("MLJOBS_STORE_DIR", str(tmp_path))
    monkeypatch.setenv("MLJOBS_RUNS_DIR", str(tmp_path))
    spec = service_spec(Project.from_env(), "predict", [], [], None, None, None, "test")
    spec["command"], spec["args"] = ["python", "-c", KEY_PROBE], []
    code, stderr, stdout = run_probe(swarm, spec)
    assert code == 0, stderr
    assert stdout.split() == ["['MLJOBS_SIGNING_KEY_FILE']", hashlib.sha256(key.encode()).hexdigest()]
    left = swarm.docker(1, "secret", "ls", "-q", "--filter", "label=org.mljobs.role=predict").stdout.split()
    assert left == []  # its secret goes with it
