"""The training job: data in, a verified model version out (python -m mljobs.jobs.train)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import demo
from ..errors import BadInputError, UsageError
from ..estimators import fit_lightgbm
from ..featurize import Featurizer
from ..metrics import classification_metrics, regression_metrics
from ..predictor import METADATA_FILE, SCHEMA_FILE, installed_version
from ..runs import RunRecord
from ..schema import CLASSIFICATION, FeatureSchema, infer_schema
from ..store import ModelStore
from ..tableio import read_table, resolve_inputs
from .common import add_common_flags, run_job

log = logging.getLogger("mljobs.train")

DEFAULTS: dict[str, Any] = {
    "input": None,
    "target": None,
    "model": None,
    "task": "auto",
    "params": None,
    "drop": [],
    "valid_fraction": 0.2,
    "seed": 42,
    "promote": None,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train", description="Train a model and publish it to the model store.")
    p.add_argument("--input", help="CSV or Parquet: a file, a folder of parts or a glob (default: the demo data)")
    p.add_argument("--target", help="the column to predict")
    p.add_argument("--model", help="the model's name in the store")
    p.add_argument("--task", choices=["auto", "classification", "regression"])
    p.add_argument("--params", help="estimator parameters as inline JSON")
    p.add_argument("--drop", type=lambda s: [c.strip() for c in s.split(",") if c.strip()], help="columns to leave out, comma-separated")
    p.add_argument("--valid-fraction", type=float, help="share of rows held out for metrics (default 0.2)")
    p.add_argument("--seed", type=int, help="random seed (default 42)")
    p.add_argument("--promote", help="also point this alias (e.g. production) at the new version")
    add_common_flags(p)
    return p


def load_training_data(args: argparse.Namespace) -> tuple[pa.Table, str]:
    if args.input is None:
        if args.target not in (None, demo.TARGET):
            raise UsageError("--target needs --input (the demo data's target is 'churned')")
        args.target, args.model = demo.TARGET, args.model or demo.MODEL
        args.drop = args.drop or [demo.ID_COLUMN]
        return demo.training_table(), "demo"
    if not args.target:
        raise UsageError("--target is required with --input: name the column to predict")
    if not args.model:
        raise UsageError("--model is required with --input: name the model to publish")
    return read_table(resolve_inputs(args.input)), args.input


def encode_target(schema: FeatureSchema, column: pa.ChunkedArray) -> np.ndarray:
    if schema.task == CLASSIFICATION:
        return pc.index_in(column, value_set=pa.array(schema.classes, column.type)).to_numpy(zero_copy_only=False).astype(np.float64)
    try:
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BadInputError(f"target column '{schema.target}' is not numeric: {exc}") from exc


def split(rows: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < valid_fraction < 1:
        raise UsageError(f"--valid-fraction must be between 0 and 1, not {valid_fraction}")
    order = np.random.default_rng(seed).permutation(rows)
    n_valid = max(1, int(round(rows * valid_fraction)))
    if rows - n_valid < 2:
        raise BadInputError(f"only {rows} usable rows: too few to train and hold out {valid_fraction:.0%}")
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def parse_params(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        params = json.loads(text) if text.lstrip().startswith("{") else json.loads(Path(text).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--params is neither inline JSON nor a readable JSON file: {exc}") from exc
    if not isinstance(params, dict):
        raise UsageError("--params must be a JSON object")
    return params


def execute(args: argparse.Namespace, record: RunRecord) -> None:
    table, source = load_training_data(args)
    record.input = source
    dropped = set(args.drop or [])
    unknown = sorted(dropped - set(table.column_names))
    if unknown:
        raise BadInputError(f"--drop names column '{unknown[0]}', which is not in the data")
    features = [c for c in table.column_names if c != args.target and c not in dropped]
    if args.target in table.column_names:
        unlabelled = table.column(args.target).null_count
        if unlabelled:
            log.warning("leaving out %d rows with no value in target column '%s'", unlabelled, args.target)
            table = table.filter(pc.is_valid(table.column(args.target)))
    schema = infer_schema(table, args.target, args.task, features)
    featurized = Featurizer(schema).transform_table(table)
    if featurized.errors:
        raise BadInputError(f"row {featurized.errors[0].row}, column '{featurized.errors[0].field}': {featurized.errors[0].reason}")
    labels = encode_target(schema, table.column(args.target))
    train_rows, valid_rows = split(table.num_rows, args.valid_fraction, args.seed)
    record.rows = {"in": table.num_rows, "train": len(train_rows), "valid": len(valid_rows)}
    log.info("training LightGBM (%s) on %d rows, %d features; %d rows held out",
             schema.task, len(train_rows), len(schema.features), len(valid_rows))
    estimator, params = fit_lightgbm(
        schema, featurized.matrix[train_rows], labels[train_rows], parse_params(args.params), args.seed
    )
    raw = estimator.predict_raw(featurized.matrix[valid_rows])
    scores = (
        classification_metrics(labels[valid_rows].astype(int), raw)
        if schema.task == CLASSIFICATION
        else regression_metrics(labels[valid_rows], raw)
    )
    metadata = {
        "model": args.model,
        "run_id": record.run_id,
        "created": record.started,
        "source": source,
        "task": schema.task,
        "estimator": {"kind": estimator.kind, "params": params, "libraries": ["lightgbm"]},
        "metrics": scores,
        "rows": record.rows,
        "libraries": {lib: installed_version(lib) for lib in ("lightgbm", "scikit-learn", "numpy", "pyarrow")},
    }

    def write_files(folder: Path) -> None:
        estimator.save(folder)
        (folder / SCHEMA_FILE).write_text(schema.to_json())
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2))

    store = ModelStore(args.models_dir)
    version = store.publish(args.model, write_files)
    record.model = {"name": args.model, "version": version}
    if args.promote:
        store.set_alias(args.model, args.promote, version)
    print_metrics(sys.stdout, scores)
    log.info("published %s:%s%s", args.model, version, f" as {args.model}@{args.promote}" if args.promote else "")


def print_metrics(out: Any, scores: dict[str, float]) -> None:
    width = max(map(len, scores))
    print("held-out metrics", file=out)
    for name, value in scores.items():
        print(f"  {name:<{width}}  {value:.4f}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("train", parser(), DEFAULTS, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
