"""The serving fleet through the SDK: N serve replicas on a private network, behind the nginx
load balancer, which alone is published (on 127.0.0.1)."""

from __future__ import annotations

import time
from typing import Any

from docker.errors import APIError, NotFound

from .engine import LauncherError, Project, container_environment, ensure_volume, require_image, service_limits

SERVE_ALIAS = "serve"  # the name nginx resolves to every replica


def network_name(project: Project) -> str:
    return f"{project.name}_fleet"


def replicas(client: Any, project: Project) -> list[Any]:
    found = client.containers.list(all=True, filters={"label": [f"org.mljobs.project={project.name}", "org.mljobs.role=serve"]})
    return sorted(found, key=lambda c: int(c.labels.get("org.mljobs.replica", "0")))


def balancer(client: Any, project: Project) -> Any | None:
    found = client.containers.list(all=True, filters={"label": [f"org.mljobs.project={project.name}", "org.mljobs.role=lb"]})
    return found[0] if found else None


def _network(client: Any, project: Project) -> Any:
    try:
        return client.networks.get(network_name(project))
    except NotFound:
        return client.networks.create(network_name(project), labels=project.labels("network"))


def _start_replica(client: Any, project: Project, index: int, model: str, workers: int) -> Any:
    network = _network(client, project)
    container = client.containers.create(
        project.image("serve"), name=f"{project.name}-serve-{index}", detach=True,
        environment=container_environment(MLJOBS_MODEL=model, MLJOBS_WORKERS=str(workers)),
        volumes={ensure_volume(client, project, "models"): {"bind": "/models", "mode": "ro"}},
        labels={**project.labels("serve"), "org.mljobs.replica": str(index)},
        # A tmpfs (bandit B108 does not apply).
        read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"], security_opt=["no-new-privileges"],  # nosec B108
        **service_limits("serve", "2g", 2), restart_policy={"Name": "unless-stopped"},
    )
    network.connect(container, aliases=[SERVE_ALIAS])
    container.start()
    return container


def scale(client: Any, project: Project, count: int, model: str, workers: int = 2) -> None:
    require_image(client, project.image("serve"))
    current = replicas(client, project)
    for container in current[count:][::-1]:  # the newest go first
        container.stop(timeout=15)
        container.remove(force=True)
    taken = {int(c.labels.get("org.mljobs.replica", "0")) for c in current[:count]}
    free = (i for i in range(1, 1000) if i not in taken)
    for _ in range(count - min(count, len(current))):
        _start_replica(client, project, next(free), model, workers)


def up(client: Any, project: Project, count: int, model: str, port: int, workers: int = 2) -> None:
    require_image(client, project.image("lb"))
    scale(client, project, count, model, workers)
    if balancer(client, project) is None:
        lb = client.containers.create(
            project.image("lb"), name=f"{project.name}-lb", detach=True, ports={"8080/tcp": ("127.0.0.1", port)},
            # A tmpfs (bandit B108 does not apply).
            labels=project.labels("lb"), read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"],  # nosec B108
            security_opt=["no-new-privileges"], **service_limits("lb", "256m", 0.5), restart_policy={"Name": "unless-stopped"},
        )
        _network(client, project).connect(lb)
        lb.start()


def down(client: Any, project: Project) -> int:
    removed = 0
    for container in [balancer(client, project), *replicas(client, project)]:
        if container is not None:
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
    for container in [balancer(client, project), *replicas(client, project)]:
        if container is None:
            continue
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

