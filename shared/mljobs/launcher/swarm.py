"""One-shot jobs on a Docker Swarm. When the engine the launcher talks to is a swarm manager
(DOCKER_HOST or a context pointing at one), a job runs as a `replicated-job` service: Swarm places
it on any node, runs it once, and reports its exit code. Its container is the contract's, as on
one host; the store and the run records are folders every node sees at the same path
(MLJOBS_STORE_DIR, MLJOBS_RUNS_DIR: NFS in production), and so must the input and output paths be.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any, Callable

from docker.errors import APIError, NotFound
from docker.types import DriverConfig, Mount, Resources, RestartPolicy, SecretReference, ServiceMode
from docker.utils import parse_bytes

from .. import contract
from ..contract import ROLES, SIGNING_KEY_FILE, STARTED_BY, Setting
from ..signing import KEY_VARIABLE
from .engine import LauncherError, Project, role_environment

STORE_DIR = Setting("MLJOBS_STORE_DIR", "")
RUNS_DIR = Setting("MLJOBS_RUNS_DIR", "")
KEY_SECRET = "mljobs_signing_key"  # nosec B105: the secret's name (its file in /run/secrets, as the stack names it), not its value
FINAL_STATES = {"complete", "failed", "rejected", "shutdown", "orphaned"}


def is_manager(client: Any) -> bool:
    swarm = client.info().get("Swarm") or {}
    return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))


def shared_folders() -> dict[str, str]:
    """The folders every node sees, by volume name; a clear error when one is not set."""
    folders = {"models": STORE_DIR.value(), "runs": RUNS_DIR.value()}
    for name, setting in (("models", STORE_DIR), ("runs", RUNS_DIR)):
        if not folders[name]:
            raise LauncherError(f"this engine is a swarm manager: set {setting.variable} to the {name} folder that every "
                                f"node sees at the same path (see the README, 'Running on a cluster')", 2)
    return folders


def shared_volume(project: Project, name: str, folder: str) -> str:
    """The node-local volume that binds `folder`, named after it: a node keeps a volume once made
    and mounts an existing one as it is, so a name reused for another folder (MLJOBS_RUNS_DIR
    changed, or the stack's or compose's volume of the same name) would mount the old one."""
    return f"{project.name}_{name}_{hashlib.sha256(folder.encode()).hexdigest()[:12]}"


def service_spec(project: Project, job: str, args: list[str], binds: list[Mount], user: str | None,
                 cpus: float | None, memory: str | None, started_by: str) -> dict[str, Any]:
    """docker-py's services.create() arguments for a job, from the contract."""
    role, folders = ROLES[job], shared_folders()
    name = f"{project.name}-{job}-{secrets.token_hex(4)}"
    volumes = [Mount(m.target, shared_volume(project, m.source, folders[m.source]), type="volume", read_only=m.read_only,
                     driver_config=DriverConfig("local", {"type": "none", "o": "bind", "device": folders[m.source]}))
               for m in role.mounts if m.is_volume]
    limits = contract.limits(role)
    resources = Resources(cpu_limit=int(cpus * 1e9) if cpus is not None else limits["nano_cpus"],
                          mem_limit=parse_bytes(memory or str(limits["mem_limit"])))
    resources["Limits"]["Pids"] = limits["pids_limit"]  # API 1.41; docker-py has no argument for it yet
    environment = role_environment(role, {STARTED_BY.variable: started_by})
    return {
        "image": contract.image(role, project.tag),
        "command": list(role.entrypoint) if role.entrypoint else None,
        "args": args,
        "name": name,
        # A job has no network (the contract), but Swarm cannot attach a service to `none` (moby#44403)
        # and without a network it joins the node's bridge: its own internal overlay, made by
        # run_service_job, has no gateway and nothing else on it.
        "networks": [] if role.network else [name],
        "mode": ServiceMode("replicated-job"),
        "restart_policy": RestartPolicy(condition="none"),  # a failed job is reported, not retried
        "env": [f"{k}={v}" for k, v in environment.items()],
        "user": user or role.user(),
        "mounts": [*volumes, Mount(contract.TMPFS, None, type="tmpfs"), *binds],
        "read_only": contract.READ_ONLY,
        "cap_drop": list(contract.CAP_DROP),
        "resources": resources,
        "labels": project.labels(job),
        "container_labels": project.labels(job),
    }


def run_service_job(client: Any, spec: dict[str, Any], on_log: Callable[[str], None],
                    timeout: float | None) -> tuple[int, str, str, bool]:
    """Run the job service to its end: (exit code, stderr, stdout, timed out). Removed afterwards,
    with its network and secret."""
    made = [client.networks.create(name, driver="overlay", internal=True, labels=spec["labels"])
            for name in spec["networks"]]
    try:
        spec = _key_as_secret(client, spec, made)
        service = client.services.create(**spec)
    except BaseException:
        _remove(made)
        raise
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            tasks = service.tasks()
            states = [t["Status"]["State"] for t in tasks]
            if tasks and all(state in FINAL_STATES for state in states):
                break
            if deadline is not None and time.monotonic() > deadline:
                return 137, _logs(service, stderr=True), _logs(service, stderr=False), True
            time.sleep(0.5)
        status = tasks[0]["Status"]
        code = int((status.get("ContainerStatus") or {}).get("ExitCode", 1))
        if status["State"] == "rejected":  # never started: the engine says why (an image missing on the node, say)
            raise LauncherError(f"swarm could not start the {spec['name']} job: {status.get('Err', 'rejected')}")
        stderr, stdout = _logs(service, stderr=True), _logs(service, stderr=False)
        for line in stderr.splitlines():
            on_log(line)
        return code, stderr, stdout, False
    finally:
        try:
            service.remove()
        except (NotFound, APIError):
            pass
        _remove(made)


def _key_as_secret(client: Any, spec: dict[str, Any], made: list[Any]) -> dict[str, Any]:
    """The spec with the signing key moved out of its environment, which `docker service inspect`
    shows, into a Docker secret of the job's own, read from a file as the stack's replicas do."""
    prefix = f"{KEY_VARIABLE}="
    key = next((entry[len(prefix):] for entry in spec["env"] if entry.startswith(prefix)), None)
    if key is None:
        return spec
    secret = client.secrets.create(name=spec["name"], data=key.encode(), labels=spec["labels"])
    made.append(secret)
    env = [entry for entry in spec["env"] if not entry.startswith(prefix)]
    return {**spec, "env": [*env, f"{SIGNING_KEY_FILE}=/run/secrets/{KEY_SECRET}"],
            "secrets": [SecretReference(secret.id, spec["name"], filename=KEY_SECRET)]}


def _remove(made: list[Any]) -> None:
    """The job's network and secret, once its service is gone."""
    for thing in reversed(made):
        for _ in range(20):  # the manager may still count the removed service as their user for a moment
            try:
                thing.remove()
                break
            except NotFound:
                break
            except APIError:
                time.sleep(0.25)


def _logs(service: Any, stderr: bool) -> str:
    try:
        chunks = service.logs(stdout=not stderr, stderr=stderr)
        return b"".join(chunks).decode("utf-8", "replace")
    except (APIError, NotFound):
        return ""
