"""The training job: data in, a verified model version out (python -m mljobs.jobs.train)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import yaml

from .. import demo
from ..datafile import DataFile
from ..errors import UsageError
from ..runs import RunRecord
from ..tableio import fingerprint, read_table, resolve_inputs
from ..training import TrainSpec, publish, train
from ..mlflow_tracking import log_training_run
from .store_option import STORE_DEFAULT, add_store_flag, job_store
from .common import add_common_flags, as_list, run_job

log = logging.getLogger("mljobs.train")

DEFAULTS: dict[str, Any] = {
    "input": None,
    "target": None,
    "model": None,
    "task": "auto",
    "estimator": "lightgbm",
    "params": None,
    "features": None,
    "drop": [],
    "valid_fraction": 0.2,
    "cv": None,
    "seed": 42,
    "promote": None,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train", description="Train a model and publish it to the model store.")
    p.add_argument("--input", help="CSV or Parquet: a file, a folder of parts or a glob (default: the demo data)")
    p.add_argument("--target", help="the column to predict")
    p.add_argument("--model", help="the model's name in the store")
    p.add_argument("--task", choices=["auto", "classification", "regression"])
    p.add_argument("--estimator", help="'lightgbm' (default) or a scikit-learn class, e.g. sklearn.ensemble.RandomForestClassifier")
    p.add_argument("--params", help="estimator parameters: inline JSON, or a YAML/JSON file")
    p.add_argument("--features", help="the feature columns, comma-separated (default: all but target and --drop)")
    p.add_argument("--drop", help="columns to leave out, comma-separated")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--valid-fraction", type=float, help="share of rows held out for metrics (default 0.2)")
    split.add_argument("--cv", type=int, help="K-fold cross-validated metrics instead; the model then trains on all rows")
    p.add_argument("--seed", type=int, help="random seed (default 42)")
    p.add_argument("--promote", help="also point this alias (e.g. production) at the new version")
    add_common_flags(p)
    add_store_flag(p)
    return p


def parse_params(value: Any) -> dict[str, Any]:
    """Parameters from a mapping (YAML config), inline JSON, or a YAML/JSON file."""
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value if value.lstrip().startswith("{") else Path(value).read_text())
        except OSError as exc:
            raise UsageError(f"--params {value}: neither inline JSON nor a readable file ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise UsageError(f"--params is not valid JSON or YAML: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError("--params must be a mapping of parameter names to values")
    return value


def load_data(args: argparse.Namespace) -> tuple[pa.Table, list[DataFile]]:
    if args.input is None:
        if args.target not in (None, demo.TARGET):
            raise UsageError(f"--target needs --input (the demo data's target is '{demo.TARGET}')")
        args.target, args.model = demo.TARGET, args.model or demo.MODEL
        args.drop = as_list(args.drop) or [demo.ID_COLUMN]
        return demo.training_table(), []
    if not args.target:
        raise UsageError("--target is required with --input: name the column to predict")
    if not args.model:
        raise UsageError("--model is required with --input: name the model to publish")
    files = resolve_inputs(args.input)
    return read_table(files), files


def execute(args: argparse.Namespace, record: RunRecord) -> None:
    record.input = args.input or "demo"
    table, files = load_data(args)
    spec = TrainSpec(
        target=args.target, task=args.task, estimator=args.estimator, params=parse_params(args.params),
        features=as_list(args.features) or None, drop=as_list(args.drop),
        valid_fraction=float(args.valid_fraction), cv=int(args.cv) if args.cv else None, seed=int(args.seed),
    )
    trained = train(table, spec)
    record.rows = trained.rows
    store = job_store(args)
    version = publish(store, args.model, trained, {
        "run_id": record.run_id, "created": record.started, "source": record.input,
        "data_fingerprint": fingerprint(files) if files else None,
    })
    record.model = {"name": args.model, "version": version}
    log_training_run(store, args.model, version, trained, spec, record.run_id)  # only when MLFLOW_TRACKING_URI is set
    if args.promote:
        store.promote(args.model, version, args.promote)
    print_metrics(trained.metrics, trained.description)
    log.info("published %s:%s%s", args.model, version, f" as {args.model}@{args.promote}" if args.promote else "")


def print_metrics(metrics: dict[str, float], description: str) -> None:
    width = max(map(len, metrics))
    print(f"held-out metrics ({description})")
    for name, value in metrics.items():
        print(f"  {name:<{width}}  {value:.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("train", parser(), {**DEFAULTS, **STORE_DEFAULT}, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
