"""Talking to Docker: the connection, project naming, volumes, and errors a person can act on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import docker
from docker.errors import DockerException, ImageNotFound, NotFound

from ..errors import MljobsError
from ..signing import KEY_VARIABLE, signing_key

LABEL = "org.mljobs.managed"
IMAGES = ("train", "predict", "serve", "lb")


class LauncherError(MljobsError):
    """A problem the launcher reports in one sentence (no traceback), with its exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Project:
    """Names shared with compose.yaml, so the launcher and compose see the same volumes."""

    name: str = "mljobs"
    tag: str = "latest"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Project:
        environ = os.environ if environ is None else environ
        return cls(environ.get("COMPOSE_PROJECT_NAME", "mljobs"), environ.get("MLJOBS_TAG", "latest"))

    def image(self, job: str) -> str:
        return f"mljobs-{job}:{self.tag}"

    def volume(self, name: str) -> str:
        return f"{self.name}_{name}"

    def labels(self, role: str) -> dict[str, str]:
        return {LABEL: "true", "org.mljobs.project": self.name, "org.mljobs.role": role}


def service_limits(service: str, memory: str, cpus: float) -> dict[str, Any]:
    """Memory, CPU and pids limits of a long-running container, overridable with the variables
    compose.yaml reads (MLJOBS_SERVE_MEMORY, MLJOBS_SERVE_CPUS, MLJOBS_LB_..., MLJOBS_PIDS)."""
    prefix = f"MLJOBS_{service.upper()}"
    return {
        "mem_limit": os.environ.get(f"{prefix}_MEMORY", memory),
        "nano_cpus": int(float(os.environ.get(f"{prefix}_CPUS", cpus)) * 1e9),
        "pids_limit": pids_limit(),
    }


def pids_limit() -> int:
    return int(os.environ.get("MLJOBS_PIDS", "512"))


def container_environment(**values: str) -> dict[str, str]:
    """A container's variables, plus the signing key read on the host (from a key file or the
    environment), so containers the launcher starts sign and check models as compose's do."""
    key = signing_key()
    return {**values, **({KEY_VARIABLE: key.decode()} if key else {})}


def connect(environ: Mapping[str, str] | None = None) -> Any:
    """A Docker client from DOCKER_HOST and friends, as the docker CLI would make it."""
    environ = os.environ if environ is None else environ
    host = environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not os.path.exists(host[len("unix://"):]):
        raise LauncherError(f"cannot reach the Docker engine at {host}: is it running? (no such socket)")
    client = None
    try:
        client = docker.from_env(environment=dict(environ))
        client.ping()
        return client
    except DockerException as exc:
        if client is not None:
            client.close()
        raise LauncherError(f"cannot reach the Docker engine at {host}: is it running? ({_short(exc)})") from None


def require_image(client: Any, image: str) -> None:
    try:
        client.images.get(image)
    except ImageNotFound:
        raise LauncherError(f"image {image} is missing: run `mljobs build` first") from None


def ensure_volume(client: Any, project: Project, name: str) -> str:
    """The project's volume, created with compose's own labels if missing, so compose adopts it."""
    full = project.volume(name)
    try:
        client.volumes.get(full)
    except NotFound:
        client.volumes.create(full, labels={
            **project.labels("volume"), "com.docker.compose.project": project.name, "com.docker.compose.volume": name,
        })
    return full


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
