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
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from .engine import LauncherError, Project, container_environment, ensure_volume, pids_limit, require_image

JOB_USER = "10001:10001"
EXIT_MEANINGS = {0: "done", 2: "bad usage or configuration", 3: "bad input data", 4: "model missing, refused or corrupt"}
TIMED_OUT = 124
PATH_FLAGS = {"--input": "/data/input", "--output": "/data/output", "--config": "/data/config", "--params": "/data/params",
              "--table": "/data/input", "--file": "/data/query"}


@dataclass
class JobSpec:
    job: str  # train | predict | sql | models
    args: list[str]
    mounts: dict[str, dict[str, str]] = field(default_factory=dict)  # host path -> docker-py volume spec
    models_writable: bool = False
    user: str = JOB_USER
    cpus: float = 2.0
    memory: str = "4g"
    timeout: float | None = None
    entrypoint: list[str] | None = None


@dataclass
class JobResult:
    exit_code: int
    logs: str
    timed_out: bool = False

    @property
    def reason(self) -> str:
        lines = [line for line in self.logs.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""


def map_paths(args: list[str], job: str) -> tuple[list[str], dict[str, dict[str, str]], str]:
    """Rewrite host paths in job flags to container paths; return the args, the mounts, and the
    user the job should run as (the host user when it writes host files, so it owns them)."""
    out, mounts, user = [], {}, JOB_USER
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
                out += [flag, f"{name}={_mount(Path(table_path), PATH_FLAGS[flag], flag, mounts)}"]
                continue
            out += [flag, _mount(Path(value), PATH_FLAGS[flag], flag, mounts)]
            if flag == "--output" and os.getuid() != 0:
                user = f"{os.getuid()}:{os.getgid()}"
            continue
        out.append(arg)
        i += 1
    return out, mounts, user


def _mount(path: Path, target_root: str, flag: str, mounts: dict[str, dict[str, str]]) -> str:
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
    target = f"{target_root}/{len(mounts)}" if flag in ("--input", "--table") else target_root
    mounts[str(folder)] = {"bind": target, "mode": "rw" if flag == "--output" else "ro"}
    return f"{target}/{inside}" if inside else target


def run_job(client: Any, project: Project, spec: JobSpec, on_log: Callable[[str], None], started_by: str = "mljobs") -> JobResult:
    image = project.image({"models": "train", "sql": "predict"}.get(spec.job, spec.job))
    require_image(client, image)
    volumes = {
        ensure_volume(client, project, "models"): {"bind": "/models", "mode": "rw" if spec.models_writable else "ro"},
        ensure_volume(client, project, "runs"): {"bind": "/runs", "mode": "rw"},
        **spec.mounts,
    }
    container = client.containers.create(
        image, command=spec.args, entrypoint=spec.entrypoint, volumes=volumes, user=spec.user,
        labels=project.labels(spec.job), environment=container_environment(MLJOBS_STARTED_BY=started_by),
        # A tmpfs (bandit B108 does not apply).
        nano_cpus=int(spec.cpus * 1e9), mem_limit=spec.memory, read_only=True, tmpfs={"/tmp": ""},  # nosec B108
        network_disabled=True,  # Kaggle-style: a job needs no network
        cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=pids_limit(),
    )
    try:
        container.start()
        streamer = threading.Thread(target=_stream, args=(container, on_log), daemon=True)
        streamer.start()
        exit_code, timed_out = _wait(container, spec.timeout)
        streamer.join(5)
        logs = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        return JobResult(exit_code, logs, timed_out)
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
