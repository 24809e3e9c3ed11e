"""Training runs logged to an MLflow tracking server when MLFLOW_TRACKING_URI is set: parameters,
held-out metrics, the report, schema and metadata as artifacts, and tags naming the model version,
so MLflow's UI compares our runs with the rest. Without the variable this does nothing.

The model is already published when the run is logged: a server that cannot be reached costs a
warning, not the version (the job still exits 0)."""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from .errors import MljobsError
from .mlflow_rest import MlflowRest, tracking_uri

log = logging.getLogger("mljobs.mlflow")

ARTIFACTS = {"report.html": "text/html", "schema.json": "application/json", "metadata.json": "application/json"}
MAX_PARAMS_PER_CALL, MAX_PARAM_VALUE = 100, 6000  # MLflow's log-batch limits


def log_training_run(store: Any, name: str, version: str, trained: Any, spec: Any, job_run_id: str,
                     environ: Mapping[str, str] | None = None) -> str | None:
    """Log a published training run; returns MLflow's run id, or None when tracking is off or failed."""
    uri = tracking_uri(environ)
    if uri is None:
        return None
    try:
        return _log(MlflowRest(uri, environ), store, name, version, trained, spec, job_run_id, environ)
    except (MljobsError, ValueError, KeyError, TypeError) as exc:  # unreachable, refused, or an answer not MLflow's
        log.warning("the run was not logged to MLflow: %s", exc)
        return None


def run_params(trained: Any, spec: Any) -> dict[str, str]:
    params = {"target": spec.target, "task": trained.schema.task, "estimator": spec.estimator, "seed": spec.seed,
              "features": len(trained.schema.features),
              **({"cv": spec.cv} if spec.cv else {"valid_fraction": spec.valid_fraction}),
              **{f"param.{k}": v for k, v in trained.params.items() if k != "estimator"}}
    return {k[:250]: str(v)[:MAX_PARAM_VALUE] for k, v in params.items()}


def _log(client: MlflowRest, store: Any, name: str, version: str, trained: Any, spec: Any, job_run_id: str,
         environ: Mapping[str, str] | None) -> str:
    now = int(time.time() * 1000)
    tags = {"mljobs.model": name, "mljobs.version": version, "mljobs.model_ref": f"{name}:{version}",
            "mljobs.run_id": job_run_id, "mlflow.runName": f"{name}:{version}", "mlflow.source.name": "mljobs train",
            "mlflow.source.type": "JOB", "mlflow.note.content": trained.description}
    created = client.call("POST", "runs/create", {
        "experiment_id": client.experiment_id(environ), "start_time": now, "run_name": f"{name}:{version}",
        "tags": [{"key": k, "value": v} for k, v in tags.items()]})["run"]["info"]
    run_id = str(created["run_id"])
    params = list(run_params(trained, spec).items())
    for start in range(0, max(len(params), 1), MAX_PARAMS_PER_CALL):
        client.call("POST", "runs/log-batch", {
            "run_id": run_id,
            "params": [{"key": k, "value": v} for k, v in params[start:start + MAX_PARAMS_PER_CALL]],
            "metrics": [{"key": k, "value": float(v), "timestamp": now, "step": 0} for k, v in trained.metrics.items()]
            if start == 0 else []})
    verified = store.open_version(name, version)
    try:
        for file, content_type in ARTIFACTS.items():
            if file in verified.files:
                client.upload(created["artifact_uri"], file, verified.files[file], content_type)
    except MljobsError as exc:  # no artifact proxy: the run keeps its parameters, metrics and tags
        log.warning("the run's artifacts were not logged to MLflow: %s", exc)
    client.call("POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
    log.info("logged the run to MLflow at %s (run %s)", client.base, run_id)
    return run_id
