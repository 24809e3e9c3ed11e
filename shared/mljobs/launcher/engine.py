"""Talking to Docker: the connection, project naming, volumes, and errors a person can act on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import docker
from docker.context import ContextAPI
from docker.context.config import get_current_context_name
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Mount as DockerMount
from docker.utils import kwargs_from_env

from .. import contract
from ..contract import Role
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

    def image(self, image: str) -> str:
        return f"mljobs-{image}:{self.tag}"

    def volume(self, name: str) -> str:
        return f"{self.name}_{name}"

    def labels(self, role: str) -> dict[str, str]:
        return {LABEL: "true", "org.mljobs.project": self.name, "org.mljobs.role": role}


def role_environment(role: Role, values: Mapping[str, str]) -> dict[str, str]:
    """The role's variables with their values on this host, then `values`, then the signing key."""
    plain, secret = contract.role_variables(role)
    return container_environment(**{**plain, **secret, **values})


def role_container(client: Any, project: Project, role: Role, environment: Mapping[str, str],
                   binds: Sequence[DockerMount] = (), user: str | None = None) -> dict[str, Any]:
    """docker-py's create() arguments for a role's container, from the one contract: image,
    entrypoint, user, volumes and their modes, environment, limits, network and lock-down."""
    volumes = [DockerMount(m.target, ensure_volume(client, project, m.source), type="volume", read_only=m.read_only)
               for m in role.mounts if m.is_volume]
    return {
        "image": contract.image(role, project.tag),
        "entrypoint": list(role.entrypoint) if role.entrypoint else None,
        "user": user or role.user(),
        "mounts": [*volumes, *binds],
        "environment": role_environment(role, environment),
        "labels": project.labels(role.name),
        "network_disabled": not contract.needs_network(role),
        **contract.limits(role),
        **contract.lockdown(),
    }


def container_environment(**values: str) -> dict[str, str]:
    """A container's variables, plus the signing key read on the host (from a key file or the
    environment), so containers the launcher starts sign and check models as compose's do."""
    key = signing_key()
    return {**values, **({KEY_VARIABLE: key.decode()} if key else {})}


def connect(environ: Mapping[str, str] | None = None) -> Any:
    """A Docker client for the engine the docker CLI would use: DOCKER_HOST (with
    DOCKER_TLS_VERIFY and DOCKER_CERT_PATH), else the context DOCKER_CONTEXT names, else the CLI
    configuration's current context (DOCKER_CONFIG, default ~/.docker)."""
    environ = os.environ if environ is None else environ
    params, where = engine_params(environ)
    socket = unix_socket(str(params["base_url"]))
    if socket is not None and not os.path.exists(socket):
        raise LauncherError(f"cannot reach the Docker engine at {where}: is it running? (no such socket)")
    client = None
    try:
        client = docker.DockerClient(**params)
        client.ping()
        return client
    except DockerException as exc:
        if client is not None:
            client.close()
        raise LauncherError(f"cannot reach the Docker engine at {where}: is it running? ({_short(exc)})") from None


def unix_socket(host: str) -> str | None:
    """The socket file of a unix:// host (docker-py writes contexts' hosts as http+unix://)."""
    for scheme in ("unix://", "http+unix://"):
        if host.startswith(scheme):
            return host[len(scheme):]
    return None


def engine_params(environ: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """`DockerClient` arguments (base_url, tls) for the engine to use, and how to name it."""
    if environ.get("DOCKER_HOST"):
        params: dict[str, Any] = kwargs_from_env(environment=dict(environ))
        return params, str(params["base_url"])
    name = environ.get("DOCKER_CONTEXT") or get_current_context_name()
    try:
        context = ContextAPI.get_context(name)
    except Exception as exc:  # docker-py raises a bare Exception for a corrupt context file
        raise LauncherError(f"cannot read docker context '{name}': {_short(exc)}", 2) from None
    if context is None:
        raise LauncherError(f"docker context '{name}' does not exist (`docker context ls` lists them)", 2)
    if not context.Host:
        raise LauncherError(f"docker context '{name}' has no Docker endpoint", 2)
    params = {"base_url": context.Host}
    if context.TLSConfig is not None:
        params["tls"] = context.TLSConfig
    return params, context.Host if name == "default" else f"{context.Host} (docker context '{name}')"


def port_taken(exc: APIError) -> bool:
    """Whether the engine refused to publish a port because something else holds it."""
    text = str(exc.explanation or exc)
    return "port is already allocated" in text or "address already in use" in text


def docker_reason(exc: DockerException) -> str:
    """The engine's own sentence for an error, without the HTTP wrapping."""
    if isinstance(exc, APIError) and exc.explanation:
        return _short(Exception(exc.explanation))
    return _short(exc)


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
    return text[0][:300] if text else type(exc).__name__
