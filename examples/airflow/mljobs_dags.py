"""Scheduled retraining and batch scoring with the mljobs images, as Airflow DockerOperator tasks.

Drop this file into your DAGs folder. Two DAGs:

  mljobs_retrain  train on the training data, then promote the new version to the serving alias
                  only if its held-out metric is at least as good as the current one's (the gate)
  mljobs_score    score whatever files match the input pattern; a run with nothing new to score
                  succeeds without writing anything

Settings are Airflow Variables (Admin > Variables, or AIRFLOW_VAR_<NAME> in the environment), read
when a task runs, with these defaults:

  mljobs_model        demo                    mljobs_alias          production
  mljobs_train_input  (the embedded demo)     mljobs_target         churned
  mljobs_score_input  (the demo's new rows)   mljobs_gate           on   (off: always promote)
  mljobs_data_dir     /srv/mljobs/data        host folder with input/ and output/ inside

Schedules, resources and names are read when the file is parsed, from the environment:
MLJOBS_RETRAIN_SCHEDULE (@weekly), MLJOBS_SCORE_SCHEDULE (@daily), COMPOSE_PROJECT_NAME (mljobs:
volumes mljobs_models and mljobs_runs, shared with docker compose and the mljobs launcher),
MLJOBS_TAG (latest), and the container contract's variables, the same as compose's
(mljobs.contract: MLJOBS_CPUS, MLJOBS_JOB_MEMORY, MLJOBS_PREDICT_MEMORY, MLJOBS_PIDS, MLJOBS_UID and
MLJOBS_GID for who scoring runs as, so who owns data_dir/output). With a signing key in the
scheduler's environment (MLJOBS_SIGNING_KEY_FILE or MLJOBS_SIGNING_KEY), every training it runs
publishes a signed version, and every task checks signatures.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow import DAG
from airflow.providers.docker.operators.docker import DockerOperator
from docker.types import Mount

# The one container contract (pip install mljobs in the scheduler's environment: the launcher's
# light package, standard library only for this module and the signing key's reader).
from mljobs.contract import ROLES, SIGNING_KEY, STARTED_BY, image, limits, lockdown, needs_network, role_variables
from mljobs.signing import signing_key

PROJECT = os.environ.get("COMPOSE_PROJECT_NAME", "mljobs")
TAG = os.environ.get("MLJOBS_TAG", "latest")


def var(name: str, default: str) -> str:
    """A Variable, looked up when the task runs (templated), not when the file is parsed."""
    return "{{ var.value.get('mljobs_%s', '%s') }}" % (name, default)


class _ContractHostConfig:
    """The operator's Docker client, with the contract's lock-down and hard limits added to every
    container it creates: DockerOperator has no arguments for them (its `cpus` is only a share)."""

    def __init__(self, client: Any, extras: dict[str, Any]):
        self._client, self._extras = client, extras

    def create_host_config(self, **kwargs: Any) -> Any:
        return self._client.create_host_config(**{**kwargs, **self._extras})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class ContractDockerOperator(DockerOperator):
    def __init__(self, *, host_extras: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.host_extras = host_extras

    @property
    def cli(self) -> Any:
        return _ContractHostConfig(super().cli, self.host_extras)


def job(task_id: str, role_name: str, command: str) -> DockerOperator:
    """A task running one role's container exactly as the contract defines it."""
    role = ROLES[role_name]
    data_dir = var("data_dir", "/srv/mljobs/data")
    mounts = [Mount(m.target, f"{PROJECT}_{m.source}" if m.is_volume else f"{data_dir}/{m.source}",
                    type="volume" if m.is_volume else "bind", read_only=m.read_only) for m in role.mounts]
    key = signing_key()  # the scheduler's key (MLJOBS_SIGNING_KEY_FILE or MLJOBS_SIGNING_KEY), so its runs sign
    plain, secret = role_variables(role)
    return ContractDockerOperator(
        task_id=task_id,
        image=image(role, TAG),
        entrypoint=list(role.entrypoint) if role.entrypoint else None,
        command=command,
        mounts=mounts,
        # The run record on the volume names this Airflow run, so `mljobs runs` and Airflow agree.
        environment={**plain, STARTED_BY.variable: "airflow:{{ dag.dag_id }}:{{ run_id }}"},
        # Never rendered in Airflow's UI: the signing key and the object store's credentials.
        private_environment={**secret, **({SIGNING_KEY.variable: key.decode()} if key else {})},
        user=role.user(),
        network_mode=None if needs_network(role) else "none",
        host_extras={**limits(role), **lockdown()},
        mount_tmp_dir=False,
        auto_remove="force",  # removed after its exit code and logs are collected
        labels={"org.mljobs.managed": "true", "org.mljobs.project": PROJECT, "org.mljobs.role": role.name},
    )


def input_flags(name: str) -> str:
    """--input /data/input/<the Variable's path>, or nothing (the embedded demo data)."""
    value = f"var.value.get('mljobs_{name}_input', '')"
    return "{% if " + value + " %}--input /data/input/{{ " + value + " }}{% endif %}"


def scheduled(dag_id: str, schedule_variable: str, default_schedule: str) -> DAG:
    return DAG(dag_id, schedule=os.environ.get(schedule_variable, default_schedule),
               start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["mljobs"], doc_md=__doc__)


with scheduled("mljobs_retrain", "MLJOBS_RETRAIN_SCHEDULE", "@weekly"):
    train = job("train", "train", f"{input_flags('train')} --target {var('target', 'churned')} --model {var('model', 'demo')}")
    gate = "{{ '--no-gate' if var.value.get('mljobs_gate', 'on') == 'off' else '' }}"
    promote = job("promote", "models", f"--models-dir /models promote-if-better {var('model', 'demo')} --alias {var('alias', 'production')} {gate}")
    train >> promote

with scheduled("mljobs_score", "MLJOBS_SCORE_SCHEDULE", "@daily"):
    job("score", "predict", f"--model {var('model', 'demo')}@{var('alias', 'production')} {input_flags('score')} --allow-empty")
