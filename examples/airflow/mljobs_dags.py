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
MLJOBS_RETRAIN_SCHEDULE (@weekly), MLJOBS_SCORE_SCHEDULE (@daily), MLJOBS_CPUS (2),
MLJOBS_MEMORY (4g), MLJOBS_UID and MLJOBS_GID (10001: who scoring runs as, so who owns
data_dir/output), COMPOSE_PROJECT_NAME (mljobs: volumes mljobs_models and mljobs_runs, shared
with docker compose and the mljobs launcher), MLJOBS_TAG (latest).
"""

from __future__ import annotations

import os

import pendulum
from airflow import DAG
from airflow.providers.docker.operators.docker import DockerOperator
from docker.types import Mount

PROJECT = os.environ.get("COMPOSE_PROJECT_NAME", "mljobs")
TAG = os.environ.get("MLJOBS_TAG", "latest")
SCORING_USER = f"{os.environ.get('MLJOBS_UID', '10001')}:{os.environ.get('MLJOBS_GID', '10001')}"


def var(name: str, default: str) -> str:
    """A Variable, looked up when the task runs (templated), not when the file is parsed."""
    return "{{ var.value.get('mljobs_%s', '%s') }}" % (name, default)


def job(task_id: str, image: str, command: str, models_writable: bool, data: bool, entrypoint: list[str] | None = None) -> DockerOperator:
    mounts = [
        Mount("/models", f"{PROJECT}_models", type="volume", read_only=not models_writable),
        Mount("/runs", f"{PROJECT}_runs", type="volume"),
    ]
    if data:
        mounts += [
            Mount("/data/input", var("data_dir", "/srv/mljobs/data") + "/input", type="bind", read_only=True),
            Mount("/data/output", var("data_dir", "/srv/mljobs/data") + "/output", type="bind"),
        ]
    return DockerOperator(
        task_id=task_id,
        image=f"mljobs-{image}:{TAG}",
        entrypoint=entrypoint,
        command=command,
        mounts=mounts,
        # The run record on the volume names this Airflow run, so `mljobs runs` and Airflow agree.
        environment={"MLJOBS_STARTED_BY": "airflow:{{ dag.dag_id }}:{{ run_id }}"},
        user=SCORING_USER if image == "predict" else "10001:10001",
        cpus=float(os.environ.get("MLJOBS_CPUS", "2")),
        mem_limit=os.environ.get("MLJOBS_MEMORY", "4g"),
        network_mode="none",  # the jobs need no network
        mount_tmp_dir=False,
        auto_remove="force",  # removed after its exit code and logs are collected
        labels={"org.mljobs.managed": "true", "org.mljobs.project": PROJECT},
    )


def input_flags(name: str) -> str:
    """--input /data/input/<the Variable's path>, or nothing (the embedded demo data)."""
    value = f"var.value.get('mljobs_{name}_input', '')"
    return "{% if " + value + " %}--input /data/input/{{ " + value + " }}{% endif %}"


def scheduled(dag_id: str, schedule_variable: str, default_schedule: str) -> DAG:
    return DAG(dag_id, schedule=os.environ.get(schedule_variable, default_schedule),
               start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["mljobs"], doc_md=__doc__)


with scheduled("mljobs_retrain", "MLJOBS_RETRAIN_SCHEDULE", "@weekly"):
    train = job("train", "train", f"{input_flags('train')} --target {var('target', 'churned')} --model {var('model', 'demo')}",
                models_writable=True, data=True)
    gate = "{{ '--no-gate' if var.value.get('mljobs_gate', 'on') == 'off' else '' }}"
    promote = job("promote", "train", f"--models-dir /models promote-if-better {var('model', 'demo')} --alias {var('alias', 'production')} {gate}",
                  models_writable=True, data=False, entrypoint=["python", "-m", "mljobs.jobs.models"])
    train >> promote

with scheduled("mljobs_score", "MLJOBS_SCORE_SCHEDULE", "@daily"):
    job("score", "predict", f"--model {var('model', 'demo')}@{var('alias', 'production')} {input_flags('score')} --allow-empty",
        models_writable=False, data=True)
