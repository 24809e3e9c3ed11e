"""The container contract, defined once: for each role (train, predict, sql, models, serve, lb)
its image, entrypoint, user, mounts and their modes, environment, limits, network and lock-down.

The launcher and the Airflow DAG build their containers from it; compose.yaml and the Swarm
stack file (deploy/swarm/stack.yaml) are written by hand for people to read, and a unit test
checks both against this module, so a drift fails CI. Every limit and setting is read from one
variable whose name is the same for every runner (the README lists them). Standard library only:
the launcher and Airflow import it without the jobs' stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

IMAGE_USER = "10001:10001"  # the user every Python role runs as
# Images that start as root, as SageMaker needs (their entry drops to IMAGE_USER): runners name the user.
STARTS_AS_ROOT = ("train", "serve")
DATA_DIR = "/data"


@dataclass(frozen=True)
class Setting:
    """A value operators change through one variable, with its default."""

    variable: str
    default: str

    def value(self, environ: Mapping[str, str] | None = None) -> str:
        environ = os.environ if environ is None else environ
        return environ.get(self.variable) or self.default

    def compose(self) -> str:
        """How compose.yaml and the stack file spell it: ${VARIABLE:-default}."""
        return "${%s:-%s}" % (self.variable, self.default)


@dataclass(frozen=True)
class Mount:
    source: str  # a volume (models, runs) or a host data folder (input, output)
    target: str
    read_only: bool

    @property
    def is_volume(self) -> bool:
        return self.source in VOLUMES


VOLUMES = ("models", "runs")
MODELS_RW, MODELS_RO = Mount("models", "/models", False), Mount("models", "/models", True)
RUNS = Mount("runs", "/runs", False)
RUNS_RO = Mount("runs", "/runs", True)  # read only: the report job shows the runs
INPUT, OUTPUT = Mount("input", f"{DATA_DIR}/input", True), Mount("output", f"{DATA_DIR}/output", False)

# The signing key: a variable for compose and the launcher, a file (a Docker secret) on Swarm.
SIGNING_KEY = Setting("MLJOBS_SIGNING_KEY", "")
SIGNING_KEY_FILE = "MLJOBS_SIGNING_KEY_FILE"
STARTED_BY = Setting("MLJOBS_STARTED_BY", "compose")
# The model store: the models volume, or an object store (s3://bucket/prefix) and its credentials.
STORE = Setting("MLJOBS_STORE", "")
OBJECT_STORE = tuple(Setting(name, "") for name in (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"))
# An MLflow tracking server: train logs its runs there, `models import` reads runs:/ and models:/ URIs.
MLFLOW = tuple(Setting(name, "") for name in (
    "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"))
SECRETS = (SIGNING_KEY, *OBJECT_STORE[:3], *MLFLOW[4:])  # handed on only when set, never as an empty value
MODEL = Setting("MLJOBS_MODEL", "demo")
WORKERS = Setting("MLJOBS_WORKERS", "2")
MAX_MODELS = Setting("MLJOBS_MAX_MODELS", "8")  # models a serve worker keeps loaded (least recently used unloaded)
MAX_MODEL_MB = Setting("MLJOBS_MAX_MODEL_MB", "")  # and the model files' MB it keeps loaded (none: no bound)
HOST_UID, HOST_GID = Setting("MLJOBS_UID", "10001"), Setting("MLJOBS_GID", "10001")
PIDS = Setting("MLJOBS_PIDS", "512")

JOB_CPUS = Setting("MLJOBS_CPUS", "2")
JOB_MEMORY = Setting("MLJOBS_JOB_MEMORY", "4g")

# Lock-down of every container: read-only root with a tmpfs for scratch, no capabilities, no
# privilege gain, bounded pids.
READ_ONLY = True
TMPFS = "/tmp"  # nosec B108: a tmpfs of the container's own
CAP_DROP = ("ALL",)
SECURITY_OPT = ("no-new-privileges:true",)


@dataclass(frozen=True)
class Role:
    name: str
    image: str  # mljobs-<image>
    mounts: tuple[Mount, ...]
    memory: Setting
    cpus: Setting
    environment: tuple[Setting, ...]
    entrypoint: tuple[str, ...] | None = None  # None: the image's own
    runs_as_host_user: bool = False  # it writes host files, so it runs as their owner (MLJOBS_UID)
    network: bool = False  # always; else only to reach an object store (Kaggle-style jobs run offline)
    port: int | None = None  # the port it listens on inside the container

    def user(self, environ: Mapping[str, str] | None = None) -> str:
        if self.runs_as_host_user:
            return f"{HOST_UID.value(environ)}:{HOST_GID.value(environ)}"
        return IMAGE_USER

    def compose_user(self) -> str | None:
        """compose.yaml's `user:` (None: the image's own user)."""
        if self.runs_as_host_user:
            return f"{HOST_UID.compose()}:{HOST_GID.compose()}"
        return IMAGE_USER if self.image in STARTS_AS_ROOT else None


STORE_ENVIRONMENT = (SIGNING_KEY, STORE, *OBJECT_STORE)
JOB_ENVIRONMENT = (*STORE_ENVIRONMENT, STARTED_BY)
MLFLOW_JOB_ENVIRONMENT = (*JOB_ENVIRONMENT, *MLFLOW)  # the train image's jobs: train and models

ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role("train", "train", (MODELS_RW, RUNS, INPUT), JOB_MEMORY, JOB_CPUS, MLFLOW_JOB_ENVIRONMENT),
        Role("predict", "predict", (MODELS_RO, RUNS, INPUT, OUTPUT), Setting("MLJOBS_PREDICT_MEMORY", "4g"), JOB_CPUS,
             (*JOB_ENVIRONMENT, MODEL), runs_as_host_user=True),
        Role("sql", "predict", (MODELS_RO, RUNS, INPUT, OUTPUT), JOB_MEMORY, JOB_CPUS, JOB_ENVIRONMENT,
             entrypoint=("python", "-m", "mljobs.jobs.sql"), runs_as_host_user=True),
        Role("models", "train", (MODELS_RW, RUNS, INPUT), JOB_MEMORY, JOB_CPUS, MLFLOW_JOB_ENVIRONMENT,
             entrypoint=("python", "-m", "mljobs.jobs.models")),
        # `models report` as a job of its own: it writes the output folder as its owner, which the
        # models role (it writes the store as 10001) cannot.
        Role("report", "predict", (MODELS_RO, RUNS_RO, OUTPUT), JOB_MEMORY, JOB_CPUS, JOB_ENVIRONMENT,
             entrypoint=("python", "-m", "mljobs.jobs.models", "report"), runs_as_host_user=True),
        Role("serve", "serve", (MODELS_RO, RUNS_RO), Setting("MLJOBS_SERVE_MEMORY", "2g"), Setting("MLJOBS_SERVE_CPUS", "2"),
             (*STORE_ENVIRONMENT, MODEL, WORKERS, MAX_MODELS, MAX_MODEL_MB), network=True, port=8080),
        Role("lb", "lb", (), Setting("MLJOBS_LB_MEMORY", "256m"), Setting("MLJOBS_LB_CPUS", "0.5"), (), network=True, port=8080),
    )
}
JOBS = ("train", "predict", "sql", "models")


def is_remote(location: str) -> bool:
    return location.startswith("s3://")


def needs_network(role: Role, args: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> bool:
    """Serve and lb always; a job only when its store, input or output is in an object store, or
    when it talks to an MLflow tracking server."""
    mlflow = MLFLOW[0] in role.environment and bool(MLFLOW[0].value(environ))
    return role.network or mlflow or is_remote(STORE.value(environ)) or any("s3://" in arg for arg in args)


def role_variables(role: Role, environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """A role's variables with their values here, as (plain, secret); unset ones are left out. The
    signing key is not among them: signing.signing_key() reads it, from its file if need be."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for setting in role.environment:
        value = setting.value(environ)
        if setting is not SIGNING_KEY and value:
            (secret if setting in SECRETS else plain)[setting.variable] = value
    return plain, secret


def image(role: Role, tag: str) -> str:
    return f"mljobs-{role.image}:{tag}"


def limits(role: Role, environ: Mapping[str, str] | None = None) -> dict[str, str | int]:
    """The Docker Engine API's limits of a role's container (docker-py's create arguments)."""
    return {
        "mem_limit": role.memory.value(environ),
        "nano_cpus": int(float(role.cpus.value(environ)) * 1e9),
        "pids_limit": int(PIDS.value(environ)),
    }


def lockdown() -> dict[str, object]:
    """docker-py's create arguments for the lock-down every container gets."""
    return {"read_only": READ_ONLY, "tmpfs": {TMPFS: ""}, "cap_drop": list(CAP_DROP), "security_opt": list(SECURITY_OPT)}
