"""The serving fleet through the SDK: N serve replicas on a private network, behind the nginx
load balancer, which alone is published (on 127.0.0.1)."""

from __future__ import annotations

import os
import time
from typing import Any

from docker.errors import APIError, NotFound

from ..contract import MODEL, ROLES, WORKERS
from .engine import LauncherError, Project, docker_reason, port_taken, require_image, role_container

SERVE_ALIAS = "serve"  # the name nginx resolves to every replica
LB_PORT = "8080/tcp"  # nginx's port inside its container


def network_name(project: Project) -> str:
    return f"{project.name}_fleet"


def replicas(client: Any, project: Project) -> list[Any]:
    found = client.containers.list(all=True, filters={"label": [f"org.mljobs.project={project.name}", "org.mljobs.role=serve"]})
    return sorted(found, key=lambda c: int(c.labels.get("org.mljobs.replica", "0")))


def balancers(client: Any, project: Project) -> list[Any]:
    found = client.containers.list(all=True, filters={"label": [f"org.mljobs.project={project.name}", "org.mljobs.role=lb"]})
    return sorted(found, key=lambda c: c.name != balancer_name(project))  # ours first, then any left by a crash


def balancer(client: Any, project: Project) -> Any | None:
    found = balancers(client, project)
    return found[0] if found else None


def balancer_name(project: Project) -> str:
    return f"{project.name}-lb"


def published_port(container: Any) -> int | None:
    """The host port Docker published the load balancer on (None when it is not running)."""
    container.reload()
    bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(LB_PORT) or []
    return int(bindings[0]["HostPort"]) if bindings else None


def default_port() -> int:
    return int(os.environ.get("MLJOBS_LB_PORT", "8000"))


def _network(client: Any, project: Project) -> Any:
    try:
        return client.networks.get(network_name(project))
    except NotFound:
        return client.networks.create(network_name(project), labels=project.labels("network"))


def _start_replica(client: Any, project: Project, index: int, model: str, workers: int) -> Any:
    network = _network(client, project)
    settings = role_container(client, project, ROLES["serve"], {MODEL.variable: model, WORKERS.variable: str(workers)})
    settings["labels"]["org.mljobs.replica"] = str(index)
    container = client.containers.create(name=f"{project.name}-serve-{index}", detach=True,
                                         restart_policy={"Name": "unless-stopped"}, **settings)
    network.connect(container, aliases=[SERVE_ALIAS])
    container.start()
    return container


def fleet_settings(current: list[Any], model: str | None, workers: int | None) -> tuple[str, int]:
    """The model and workers of new replicas: as asked, else as the running fleet's, else the
    contract's defaults (so `serve scale` never starts a replica unlike the others)."""
    env = dict(item.split("=", 1) for item in current[0].attrs["Config"]["Env"]) if current else {}
    return (model or env.get(MODEL.variable) or MODEL.value(),
            workers or int(env.get(WORKERS.variable) or WORKERS.value()))


def scale(client: Any, project: Project, count: int, model: str | None = None, workers: int | None = None) -> None:
    require_image(client, project.image("serve"))
    current = replicas(client, project)
    model, workers = fleet_settings(current, model, workers)
    for container in current[count:][::-1]:  # the newest go first
        container.stop(timeout=15)
        container.remove(force=True)
    taken = {int(c.labels.get("org.mljobs.replica", "0")) for c in current[:count]}
    free = (i for i in range(1, 1000) if i not in taken)
    for _ in range(count - min(count, len(current))):
        _start_replica(client, project, next(free), model, workers)


def up(client: Any, project: Project, count: int, model: str | None, port: int | None, workers: int | None = None) -> int:
    """Start or resize the fleet; the load balancer on `port` (None: where it runs now, else the
    default). Returns the port Docker published it on."""
    require_image(client, project.image("lb"))
    scale(client, project, count, model, workers)
    lb = balancer(client, project)
    running_on = published_port(lb) if lb is not None and lb.status == "running" else None
    if running_on is not None and port in (None, running_on):
        return running_on
    lb = _replace_balancer(client, project, lb, default_port() if port is None else port)
    published = published_port(lb)
    if published is None:
        raise LauncherError("the load balancer started but Docker reports no published port: see `mljobs logs lb`")
    return published


def _replace_balancer(client: Any, project: Project, old: Any | None, port: int) -> Any:
    """A load balancer on `port`, started before the old one stops, which keeps serving if the
    new one cannot start (its name is parked meanwhile, as the new one needs it)."""
    if old is not None:
        old.rename(f"{balancer_name(project)}-replaced")
    try:
        new = _start_balancer(client, project, port)
    except BaseException:
        if old is not None:
            old.rename(balancer_name(project))
        raise
    if old is not None:
        old.stop(timeout=15)
        old.remove(force=True)
    return new


def _start_balancer(client: Any, project: Project, port: int) -> Any:
    lb = client.containers.create(name=balancer_name(project), detach=True, ports={LB_PORT: ("127.0.0.1", port)},
                                  restart_policy={"Name": "unless-stopped"}, **role_container(client, project, ROLES["lb"], {}))
    try:
        _network(client, project).connect(lb)
        lb.start()
    except APIError as exc:
        lb.remove(force=True)  # a created, never started balancer would be taken for the fleet's
        if port_taken(exc):
            raise LauncherError(f"port {port} on 127.0.0.1 is already in use: choose another with --port", 2) from None
        raise LauncherError(f"the load balancer did not start: {docker_reason(exc)}") from None
    return lb


def down(client: Any, project: Project) -> int:
    removed = 0
    for container in [*balancers(client, project), *replicas(client, project)]:
        container.stop(timeout=15)
        container.remove(force=True)
        removed += 1
    try:
        client.networks.get(network_name(project)).remove()
    except (NotFound, APIError):
        pass
    return removed


def status(client: Any, project: Project) -> list[dict[str, str]]:
    rows = []
    for container in [*balancers(client, project), *replicas(client, project)]:
        container.reload()
        state = container.attrs["State"]
        ports = container.attrs["NetworkSettings"]["Ports"] or {}
        published = ", ".join(f"{b['HostIp']}:{b['HostPort']}" for binding in ports.values() if binding for b in binding)
        rows.append({
            "name": container.name, "role": container.labels.get("org.mljobs.role", "?"),
            "state": state["Status"], "health": state.get("Health", {}).get("Status", "-"), "published": published or "-",
        })
    return rows


def wait_healthy(client: Any, project: Project, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        rows = [r for r in status(client, project) if r["role"] == "serve"]
        if rows and all(r["health"] == "healthy" for r in rows):
            return
        if any(r["state"] == "exited" for r in rows):
            break
        time.sleep(1)
    raise LauncherError("the serve replicas did not become healthy: see `mljobs logs serve`")

