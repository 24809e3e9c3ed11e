"""One container contract (mljobs.contract): compose.yaml, the Swarm stack file, the launcher and
the Airflow DAG must all agree with it. Change one limit in compose.yaml and this fails."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from mljobs import contract
from mljobs.contract import PIDS, ROLES, Role
from mljobs.launcher import cli

from .fake_docker import FakeDockerClient

REPO = Path(__file__).resolve().parents[2]
DATA = "${MLJOBS_DATA_DIR:-./data}"
TAG = "${MLJOBS_TAG:-latest}"


def services(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["services"]


def compose_volume(mount: contract.Mount) -> str:
    source = mount.source if mount.is_volume else f"{DATA}/{mount.source}"
    return f"{source}:{mount.target}" + (":ro" if mount.read_only else "")


# --- compose.yaml ---------------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES.values(), ids=lambda r: r.name)
def test_compose_follows_the_contract(role: Role) -> None:
    assert_compose_service_follows(role, services(REPO / "compose.yaml")[role.name])


def assert_compose_service_follows(role: Role, service: dict[str, Any]) -> None:
    assert service["image"] == f"mljobs-{role.image}:{TAG}"
    assert service.get("entrypoint") == (list(role.entrypoint) if role.entrypoint else None)
    assert service.get("user") == role.compose_user()
    assert sorted(service.get("volumes", [])) == sorted(compose_volume(m) for m in role.mounts)
    assert service["mem_limit"] == role.memory.compose() and str(service["cpus"]) == role.cpus.compose()
    assert service["pids_limit"] == PIDS.compose()
    assert service["read_only"] is True and service["tmpfs"] == [contract.TMPFS]
    assert service["cap_drop"] == list(contract.CAP_DROP) and service["security_opt"] == list(contract.SECURITY_OPT)
    assert service.get("environment", {}) == {s.variable: s.compose() for s in role.environment}
    # Compose cannot make a network depend on MLJOBS_STORE: jobs keep its default one (the launcher is stricter).
    assert "network_mode" not in service


def test_compose_has_no_service_outside_the_contract() -> None:
    assert set(services(REPO / "compose.yaml")) == set(ROLES)


# --- the Swarm stack file ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["serve", "lb"])
def test_the_stack_file_follows_the_contract(name: str) -> None:
    role, service = ROLES[name], services(REPO / "deploy" / "swarm" / "stack.yaml")[name]
    assert service["image"] == f"mljobs-{role.image}:{TAG}"
    volumes = [v for v in service["volumes"] if isinstance(v, str)]
    assert sorted(volumes) == sorted(compose_volume(m) for m in role.mounts)
    assert {"type": "tmpfs", "target": contract.TMPFS} in service["volumes"]  # Swarm drops a service's `tmpfs:`
    assert service["read_only"] is True and service["cap_drop"] == list(contract.CAP_DROP)
    limits = service["deploy"]["resources"]["limits"]
    # stack deploy wants pids as a number, not a ${VARIABLE}: the contract's default, written out.
    assert limits == {"memory": role.memory.compose(), "cpus": role.cpus.compose(), "pids": int(PIDS.default)}
    expected = {s.variable: s.compose() for s in role.environment if s is not contract.SIGNING_KEY}
    if contract.SIGNING_KEY in role.environment:  # on Swarm the key is a secret, read from its file
        expected[contract.SIGNING_KEY_FILE] = "/run/secrets/mljobs_signing_key"
        assert service["secrets"] == ["mljobs_signing_key"]
    assert service.get("environment", {}) == expected


# --- the launcher ---------------------------------------------------------------------------

@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeDockerClient:
    fake = FakeDockerClient()
    monkeypatch.setattr(cli, "connect", lambda *a, **k: fake)
    return fake


def assert_container_follows(role: Role, image: str, kwargs: dict[str, Any], environment: dict[str, str]) -> None:
    assert image == f"mljobs-{role.image}:latest"
    assert kwargs.get("entrypoint") == (list(role.entrypoint) if role.entrypoint else None)
    volumes = {m["Target"]: bool(m.get("ReadOnly")) for m in kwargs["mounts"] if m["Type"] == "volume"}
    assert volumes == {m.target: m.read_only for m in role.mounts if m.is_volume}
    assert {k: kwargs[k] for k in ("mem_limit", "nano_cpus", "pids_limit")} == contract.limits(role)
    assert {k: kwargs[k] for k in contract.lockdown()} == contract.lockdown()
    assert kwargs["network_disabled"] is (not role.network)
    assert_variables_follow(role, environment)


def assert_variables_follow(role: Role, environment: dict[str, str]) -> None:
    """The role's variables that have a value here, and no other; the key only where it is set."""
    assert set(environment) <= {s.variable for s in role.environment}
    assert {s.variable for s in role.environment if s.default} <= set(environment)


@pytest.mark.parametrize("job", contract.JOBS)
def test_the_launchers_jobs_follow_the_contract(engine: FakeDockerClient, job: str) -> None:
    cli.main([job] if job != "models" else ["models", "list", "--json"])
    [container] = [c for c in engine.created if c.labels["org.mljobs.role"] == job]
    assert_container_follows(ROLES[job], container.image, container.kwargs, container.environment)
    assert container.kwargs["user"] == ROLES[job].user()


def test_the_launchers_fleet_follows_the_contract(engine: FakeDockerClient) -> None:
    assert cli.main(["serve", "up", "--replicas", "1", "--port", "8123"]) == 0
    for name in ("serve", "lb"):
        [container] = engine.running(name)
        assert_container_follows(ROLES[name], container.image, container.kwargs, container.environment)


@pytest.mark.parametrize("old, new", [("${MLJOBS_SERVE_MEMORY:-2g}", "${MLJOBS_SERVE_MEMORY:-3g}"),
                                      ("models:/models:ro", "models:/models"), ("cap_drop: [ALL]", "cap_drop: [NET_RAW]")])
def test_a_drift_in_compose_is_caught(old: str, new: str) -> None:
    """The check above is not vacuous: compose.yaml with one setting changed fails it."""
    text = (REPO / "compose.yaml").read_text()
    assert old in text
    with pytest.raises(AssertionError):
        assert_compose_service_follows(ROLES["serve"], yaml.safe_load(text.replace(old, new))["services"]["serve"])


# --- the Airflow DAG ---------------------------------------------------------------------------

def load_dags(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Import the example DAGs with stand-ins for Airflow's classes; returns each operator's arguments."""
    operators: list[Any] = []

    class DockerOperator:
        def __init__(self, **kwargs: Any):
            operators.append(self)
            self.kwargs = kwargs

        def __rshift__(self, other: Any) -> Any:
            return other

    class DAG:
        def __init__(self, *args: Any, **kwargs: Any): ...
        def __enter__(self) -> DAG: return self
        def __exit__(self, *exc: Any) -> None: ...

    modules = {"airflow": types.ModuleType("airflow"), "airflow.providers.docker.operators.docker": types.ModuleType("d"),
               "pendulum": types.ModuleType("pendulum")}
    modules["airflow"].DAG = DAG  # type: ignore[attr-defined]
    modules["airflow.providers.docker.operators.docker"].DockerOperator = DockerOperator  # type: ignore[attr-defined]
    modules["pendulum"].datetime = lambda *a, **k: None  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("mljobs_dags", REPO / "examples" / "airflow" / "mljobs_dags.py")
    assert spec and spec.loader
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return [{**op.kwargs, "host_extras": op.host_extras} for op in operators]


def test_the_dags_tasks_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLJOBS_SIGNING_KEY", "ab" * 16)
    tasks = {op["task_id"]: op for op in load_dags(monkeypatch)}
    assert set(tasks) == {"train", "promote", "score"}
    for task_id, role in (("train", ROLES["train"]), ("promote", ROLES["models"]), ("score", ROLES["predict"])):
        op = tasks[task_id]
        assert op["image"] == f"mljobs-{role.image}:latest"
        assert op["entrypoint"] == (list(role.entrypoint) if role.entrypoint else None)
        assert op["user"] == role.user() and op["network_mode"] == (None if role.network else "none")
        assert op["host_extras"] == {**contract.limits(role), **contract.lockdown()}
        assert {m["Target"]: bool(m["ReadOnly"]) for m in op["mounts"]} == {m.target: m.read_only for m in role.mounts}
        assert op["private_environment"] == {"MLJOBS_SIGNING_KEY": "ab" * 16}  # scheduled runs sign like the others
        assert_variables_follow(role, {k: v for k, v in op["environment"].items()})


# --- a job on a swarm ----------------------------------------------------------------------------

@pytest.mark.parametrize("job", ["predict", "sql"])
def test_a_swarm_job_follows_the_contract(monkeypatch: pytest.MonkeyPatch, job: str) -> None:
    from mljobs.launcher.engine import Project
    from mljobs.launcher.swarm import service_spec

    monkeypatch.setenv("MLJOBS_STORE_DIR", "/srv/models")
    monkeypatch.setenv("MLJOBS_RUNS_DIR", "/srv/runs")
    role, spec = ROLES[job], service_spec(Project(), job, ["--model", "demo"], [], None, None, None, "mljobs")
    assert spec["image"] == f"mljobs-{role.image}:latest" and spec["mode"] == {"ReplicatedJob": {}}
    assert spec["command"] == (list(role.entrypoint) if role.entrypoint else None) and spec["user"] == role.user()
    assert spec["read_only"] is True and spec["cap_drop"] == list(contract.CAP_DROP)
    volumes = {m["Target"]: (m["VolumeOptions"]["DriverConfig"]["Options"]["device"], m["ReadOnly"]) for m in spec["mounts"] if m["Type"] == "volume"}
    assert volumes == {"/models": ("/srv/models", True), "/runs": ("/srv/runs", False)}
    assert {"Target": contract.TMPFS, "Source": None, "Type": "tmpfs", "ReadOnly": False} in spec["mounts"]
    limits = contract.limits(role)
    assert spec["resources"]["Limits"] == {"NanoCPUs": limits["nano_cpus"], "MemoryBytes": 4 * 2**30, "Pids": limits["pids_limit"]}
    assert_variables_follow(role, dict(e.split("=", 1) for e in spec["env"]))


def test_a_swarm_job_needs_the_shared_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    from mljobs.launcher.engine import LauncherError, Project
    from mljobs.launcher.swarm import service_spec

    with pytest.raises(LauncherError, match="set MLJOBS_STORE_DIR") as caught:
        service_spec(Project(), "predict", [], [], None, None, None, "mljobs")
    assert caught.value.exit_code == 2


def test_a_job_gets_a_network_and_the_credentials_only_for_an_object_store(engine: FakeDockerClient, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.main(["models", "list", "--json"])
    assert engine.created[-1].kwargs["network_disabled"] is True
    for name, value in (("MLJOBS_STORE", "s3://models/prod"), ("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "secret"),
                        ("AWS_ENDPOINT_URL", "http://s3.internal:8333")):
        monkeypatch.setenv(name, value)
    cli.main(["models", "list", "--json"])
    job = engine.created[-1]
    assert job.kwargs["network_disabled"] is False
    assert {k: job.environment[k] for k in ("MLJOBS_STORE", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL")} == {
        "MLJOBS_STORE": "s3://models/prod", "AWS_ACCESS_KEY_ID": "id", "AWS_ENDPOINT_URL": "http://s3.internal:8333"}
