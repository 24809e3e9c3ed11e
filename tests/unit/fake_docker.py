"""A small in-memory Docker client for the launcher's unit tests, in the spirit of docker-py's own
tests/unit/fake_api.py but one level up: it fakes the SDK's high-level `DockerClient` (containers,
volumes, networks, images), records every create call with its keyword arguments, and plays the
engine's part that the launcher relies on (published ports, port conflicts, exit codes, logs)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from docker.errors import APIError, ImageNotFound, NotFound

_ids = itertools.count(1)


@dataclass
class JobOutcome:
    """What a one-shot container does when started: its exit code and what it prints."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""


def port_taken_error(port: int) -> APIError:
    # The engine's own words when a published port is in use.
    return APIError("500 Server Error: Internal Server Error", explanation=(
        f"driver failed programming external connectivity on endpoint fake-lb: "
        f"Bind for 127.0.0.1:{port} failed: port is already allocated"))


class FakeContainer:
    def __init__(self, engine: FakeDockerClient, image: str, kwargs: dict[str, Any]):
        self.engine = engine
        self.image = image
        self.kwargs = kwargs
        self.id = f"{next(_ids):012x}"
        self.name: str = kwargs.get("name") or f"fake_{self.id}"
        self.labels: dict[str, str] = dict(kwargs.get("labels") or {})
        self.status = "created"
        self.outcome = JobOutcome()
        self.published: dict[str, int] = {}
        self.networks: list[tuple[str, list[str]]] = []
        self.stopped_with: float | None = None
        self.removed = False

    # --- what the launcher calls --------------------------------------------------------------

    def start(self) -> None:
        wanted = {spec: bind for spec, bind in (self.kwargs.get("ports") or {}).items()}
        ports: dict[str, int] = {}
        for spec, (_ip, port) in wanted.items():
            if port == 0:  # the engine picks a free port
                port = max(self.engine.ports_in_use() | {49152}) + 1
            if port in self.engine.ports_in_use() or port in self.engine.ports_taken_elsewhere:
                raise port_taken_error(port)
            ports[spec] = port
        self.published = ports
        if self.labels.get("org.mljobs.role") in ("serve", "lb"):
            self.status = "running"
        else:
            self.outcome = self.engine.job_outcome(self)
            self.status = "exited"

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        return {"StatusCode": self.outcome.exit_code}

    def logs(self, stream: bool = False, follow: bool = False, stdout: bool = True, stderr: bool = True,
             tail: int | str = "all") -> Any:
        text = (self.outcome.stdout if stdout else "") + (self.outcome.stderr if stderr else "")
        data = text.encode()
        return iter([data]) if stream else data

    def stop(self, timeout: int = 10) -> None:
        self.stopped_with = timeout
        self.status = "exited"
        self.published = {}

    def kill(self) -> None:
        self.stop(0)

    def remove(self, force: bool = False) -> None:
        if self.status == "running" and not force:
            raise APIError("409 Conflict", explanation="cannot remove a running container")
        self.removed = True
        self.status = "removed"
        self.published = {}
        self.engine.live.pop(self.id, None)

    def rename(self, name: str) -> None:
        if any(c.name == name for c in self.engine.live.values() if c is not self):
            raise APIError("409 Conflict", explanation=f'the container name "/{name}" is already in use')
        self.name = name

    def reload(self) -> None:
        pass

    @property
    def attrs(self) -> dict[str, Any]:
        ports = {spec: [{"HostIp": "127.0.0.1", "HostPort": str(port)}] for spec, port in self.published.items()}
        health = {"Health": {"Status": "healthy"}} if self.status == "running" else {}
        env = [f"{k}={v}" for k, v in self.environment.items()]
        return {"State": {"Status": self.status, **health}, "NetworkSettings": {"Ports": ports}, "Config": {"Env": env}}

    # --- what the tests look at ---------------------------------------------------------------

    def mounts(self) -> dict[str, tuple[str, bool]]:
        """Container path -> (host path or volume, read-only), however the launcher passed them
        (docker-py accepts `volumes` as a dict or a list of "host:container:mode", and `mounts`)."""
        found: dict[str, tuple[str, bool]] = {}
        volumes = self.kwargs.get("volumes") or {}
        if isinstance(volumes, dict):
            for source, spec in volumes.items():
                found[spec["bind"]] = (source, spec.get("mode", "rw") == "ro")
        else:
            for text in volumes:
                source, target, *mode = text.split(":")
                found[target] = (source, mode == ["ro"])
        for mount in self.kwargs.get("mounts") or []:
            found[mount["Target"]] = (mount["Source"], bool(mount.get("ReadOnly")))
        return found

    @property
    def environment(self) -> dict[str, str]:
        env = self.kwargs.get("environment") or {}
        return dict(env) if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


class FakeContainers:
    def __init__(self, engine: FakeDockerClient):
        self.engine = engine

    def create(self, image: str, command: Any = None, **kwargs: Any) -> FakeContainer:
        self.engine.images.get(image)
        name = kwargs.get("name")
        if name and any(c.name == name for c in self.engine.live.values()):
            raise APIError("409 Conflict", explanation=f'the container name "/{name}" is already in use')
        container = FakeContainer(self.engine, image, {"command": command, **kwargs})
        self.engine.created.append(container)
        self.engine.live[container.id] = container
        return container

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[FakeContainer]:
        wanted = dict(item.split("=", 1) for item in (filters or {}).get("label", []))
        return [c for c in self.engine.live.values()
                if (all or c.status == "running") and all_match(c.labels, wanted)]

    def get(self, container_id: str) -> FakeContainer:
        for c in self.engine.live.values():
            if container_id in (c.id, c.name):
                return c
        raise NotFound(f"no such container: {container_id}")


def all_match(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


@dataclass
class FakeVolume:
    name: str
    labels: dict[str, str]


class FakeVolumes:
    def __init__(self) -> None:
        self.by_name: dict[str, FakeVolume] = {}

    def get(self, name: str) -> FakeVolume:
        if name not in self.by_name:
            raise NotFound(f"no such volume: {name}")
        return self.by_name[name]

    def create(self, name: str, labels: dict[str, str] | None = None, **_: Any) -> FakeVolume:
        self.by_name[name] = FakeVolume(name, dict(labels or {}))
        return self.by_name[name]


@dataclass
class FakeNetwork:
    engine: FakeDockerClient
    name: str
    labels: dict[str, str] = field(default_factory=dict)

    def connect(self, container: FakeContainer, aliases: list[str] | None = None) -> None:
        container.networks.append((self.name, list(aliases or [])))

    def remove(self) -> None:
        self.engine.networks.by_name.pop(self.name, None)


class FakeNetworks:
    def __init__(self, engine: FakeDockerClient):
        self.engine = engine
        self.by_name: dict[str, FakeNetwork] = {}

    def get(self, name: str) -> FakeNetwork:
        if name not in self.by_name:
            raise NotFound(f"no such network: {name}")
        return self.by_name[name]

    def create(self, name: str, labels: dict[str, str] | None = None, **_: Any) -> FakeNetwork:
        self.by_name[name] = FakeNetwork(self.engine, name, dict(labels or {}))
        return self.by_name[name]


class FakeImages:
    def __init__(self, names: set[str]):
        self.names = names

    def get(self, name: str) -> str:
        if name not in self.names:
            raise ImageNotFound(f"no such image: {name}")
        return name


class FakeDockerClient:
    """`docker.DockerClient` as far as the launcher uses it. `jobs` decides what a one-shot
    container does (by default: exit 0, print nothing); `ports_taken_elsewhere` are host ports
    some other program holds."""

    def __init__(self, images: set[str] | None = None,
                 jobs: Callable[[FakeContainer], JobOutcome] | None = None):
        self.images = FakeImages(images if images is not None else
                                 {f"mljobs-{i}:latest" for i in ("train", "predict", "serve", "lb")})
        self.containers = FakeContainers(self)
        self.volumes = FakeVolumes()
        self.networks = FakeNetworks(self)
        self.created: list[FakeContainer] = []
        self.live: dict[str, FakeContainer] = {}
        self.ports_taken_elsewhere: set[int] = set()
        self.closed = False
        self._jobs = jobs or (lambda container: JobOutcome())

    def job_outcome(self, container: FakeContainer) -> JobOutcome:
        return self._jobs(container)

    def ports_in_use(self) -> set[int]:
        return {port for c in self.live.values() for port in c.published.values()}

    def running(self, role: str) -> list[FakeContainer]:
        return [c for c in self.live.values() if c.labels.get("org.mljobs.role") == role and c.status == "running"]

    def info(self) -> dict[str, Any]:
        return {"Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False}}

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
