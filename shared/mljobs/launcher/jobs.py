"""One-shot job containers: host paths turned into mounts, limits and labels set, logs streamed
live, the exit code turned into a clear message, and the container always removed after its
status and logs are collected (never auto_remove, which races wait() and can lose the code)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from docker.errors import APIError, NotFound
from docker.types import Mount
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from ..contract import IMAGE_USER, ROLES, STARTED_BY, needs_network
from . import swarm
from .engine import LauncherError, Project, require_image, role_container

EXIT_MEANINGS = {0: "done", 2: "bad usage or configuration", 3: "bad input data", 4: "model missing, refused or corrupt"}
TIMED_OUT = 124
PATH_FLAGS = {"--input": "/data/input", "--output": "/data/output", "--config": "/data/config", "--params": "/data/params",
              "--table": "/data/input", "--file": "/data/query"}


@dataclass(frozen=True)
class Bind:
    """A host folder mounted into a job container."""

    source: str
    read_only: bool


# Keyed by container path, so every path flag gets a mount of its own, even for one host folder.
Mounts = dict[str, Bind]


@dataclass
class JobSpec:
    """A job run: its role's container as the contract defines it, with these host folders and
    the overrides the user asked for (None: the contract's setting)."""

    job: str  # train | predict | sql | models
    args: list[str]
    mounts: Mounts = field(default_factory=dict)
    user: str | None = None
    cpus: float | None = None
    memory: str | None = None
    timeout: float | None = None


@dataclass
class JobResult:
    exit_code: int
    logs: str  # standard error: the job's log and its last line's reason
    timed_out: bool = False
    output: str = ""  # standard output: a store command's answer

    @property
    def reason(self) -> str:
        lines = [line for line in self.logs.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""


def map_paths(args: list[str], job: str) -> tuple[list[str], Mounts, str]:
    """Rewrite host paths in job flags to container paths; return the args, the mounts, and the
    user the job should run as (the host user when it writes host files, so it owns them)."""
    out: list[str] = []
    mounts: Mounts = {}
    user = IMAGE_USER
    i = 0
    while i < len(args):
        arg = args[i]
        flag, _, inline = arg.partition("=")
        if flag in PATH_FLAGS and (inline or i + 1 < len(args)):
            value = inline or args[i + 1]
            i += 1 if inline else 2
            if flag == "--params" and value.lstrip().startswith("{"):
                out += [flag, value]
                continue
            if flag == "--table":  # NAME=PATH: only the path is a host path
                name, _, table_path = value.partition("=")
                out += [flag, f"{name}={_mount(Path(table_path), flag, mounts)}"]
                continue
            out += [flag, _mount(Path(value), flag, mounts)]
            if flag == "--output" and os.getuid() != 0:
                user = f"{os.getuid()}:{os.getgid()}"
            continue
        out.append(arg)
        i += 1
    return out, mounts, user


def _mount(path: Path, flag: str, mounts: Mounts) -> str:
    """Mount what a path names (a folder, or a file's or glob's folder) and return its path inside."""
    has_glob = any(ch in path.name for ch in "*?[")
    if flag == "--output":
        path.mkdir(parents=True, exist_ok=True)
        folder, inside = path.resolve(), ""
    elif has_glob or path.is_file():
        folder, inside = path.parent.resolve(), path.name
    elif path.is_dir():
        folder, inside = path.resolve(), ""
    else:
        raise LauncherError(f"{flag} {path}: no such file or folder", 3)
    if not folder.is_dir():
        raise LauncherError(f"{flag} {path}: folder {folder} does not exist", 3)
    root = PATH_FLAGS[flag]
    if flag in ("--input", "--table"):  # several inputs: one numbered mount each
        root = f"{root}/{sum(target.startswith(root + '/') for target in mounts)}"
    mounts[root] = Bind(str(folder), read_only=flag != "--output")
    return f"{root}/{inside}" if inside else root


def job_container(client: Any, project: Project, spec: JobSpec, started_by: str) -> dict[str, Any]:
    """The job's create() arguments: its role's contract, its host folders, the user's overrides."""
    role = ROLES[spec.job]
    binds = [Mount(target, bind.source, type="bind", read_only=bind.read_only) for target, bind in spec.mounts.items()]
    settings = role_container(client, project, role, {STARTED_BY.variable: started_by}, binds, spec.user)
    settings["network_disabled"] = not needs_network(role, spec.args)  # an s3:// input or output needs one
    if spec.cpus is not None:
        settings["nano_cpus"] = int(spec.cpus * 1e9)
    if spec.memory is not None:
        settings["mem_limit"] = spec.memory
    return settings


def run_job(client: Any, project: Project, spec: JobSpec, on_log: Callable[[str], None], started_by: str = "mljobs") -> JobResult:
    if swarm.is_manager(client):  # a cluster: the job lands on any node, as a replicated-job service
        binds = [Mount(target, bind.source, type="bind", read_only=bind.read_only) for target, bind in spec.mounts.items()]
        service = swarm.service_spec(project, spec.job, spec.args, binds, spec.user, spec.cpus, spec.memory, started_by)
        code, logs, output, timed_out = swarm.run_service_job(client, service, on_log, spec.timeout)
        return JobResult(code, logs, timed_out, output)
    settings = job_container(client, project, spec, started_by)
    require_image(client, settings["image"])
    container = client.containers.create(command=spec.args, **settings)
    try:
        container.start()
        streamer = threading.Thread(target=_stream, args=(container, on_log), daemon=True)
        streamer.start()
        exit_code, timed_out = _wait(container, spec.timeout)
        streamer.join(5)
        logs = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        output = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        return JobResult(exit_code, logs, timed_out, output)
    except KeyboardInterrupt:
        container.stop(timeout=10)  # SIGTERM first: the job cleans up its partial output
        raise
    finally:
        try:
            container.remove(force=True)
        except (NotFound, APIError):
            pass


def _stream(container: Any, on_log: Callable[[str], None]) -> None:
    buffer = b""
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                on_log(line.decode("utf-8", "replace"))
    except (APIError, RequestsConnectionError):
        return
    if buffer:
        on_log(buffer.decode("utf-8", "replace"))


def _wait(container: Any, timeout: float | None) -> tuple[int, bool]:
    """The exit code; with a timeout, kill the job when it runs out (wait()'s own timeout is
    only the HTTP read timeout, so poll against a deadline of our own)."""
    if timeout is None:
        return int(container.wait()["StatusCode"]), False
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            container.kill()
            return int(container.wait()["StatusCode"]), True
        try:
            return int(container.wait(timeout=min(left, 5))["StatusCode"]), False
        except (ReadTimeout, RequestsConnectionError):
            continue


def describe(job: str, result: JobResult, timeout: float | None) -> str:
    if result.timed_out:
        return f"{job} timed out after {timeout:g} s and was killed"
    if result.exit_code == 0:
        return f"{job} done"
    meaning = EXIT_MEANINGS.get(result.exit_code, "failed")
    return f"{job} failed ({meaning}, exit {result.exit_code}): {result.reason}"
