"""The training job under SageMaker, run by the entry as the unprivileged user:
`python -m mljobs.sagemaker.job [--validation DIR] -- TRAIN FLAGS`. It trains and publishes as the
train job does, then prints the metrics in the form MetricDefinitions catch:

    metric heldout:<name>=<value>       the train job's held-out metrics (train channel)
    metric validation:<name>=<value>    the validation channel scored by the published model
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np
import pyarrow.compute as pc

from ..errors import BadInputError, InvalidRecordsError, MljobsError
from ..jobs import train
from ..predictor import load_predictor
from ..signing import signing_key
from ..store import ModelRef, ModelStore
from ..tableio import read_table, resolve_inputs
from ..training import encode_target, score


def metric_lines(kind: str, metrics: dict[str, float]) -> list[str]:
    return [f"metric {kind}:{name}={value}" for name, value in metrics.items()]


def validation_metrics(store: ModelStore, name: str, target: str, folder: str) -> dict[str, float]:
    predictor = load_predictor(store, ModelRef(name))
    table = read_table(resolve_inputs(folder))
    if target not in table.column_names:
        raise BadInputError(f"the validation channel has no target column '{target}'")
    table = table.filter(pc.is_valid(table.column(target)))
    featurized = predictor.featurizer.transform_table(table)
    if featurized.errors:
        raise InvalidRecordsError(featurized.errors)
    truth = encode_target(predictor.schema, table.column(target))
    known = ~np.isnan(truth)  # a class the model never saw cannot be scored
    return score(predictor.schema, truth[known], predictor.predict_raw(featurized.matrix[known]))


def main(argv: Sequence[str] | None = None) -> int:
    own = argparse.ArgumentParser(prog="mljobs.sagemaker.job")
    own.add_argument("--validation")
    own.add_argument("train_flags", nargs=argparse.REMAINDER)
    args = own.parse_args(argv)
    flags = [f for f in args.train_flags if f != "--"] if args.train_flags[:1] == ["--"] else args.train_flags
    code = train.main(flags)
    if code != 0:
        return code
    where, _ = train.parser().parse_known_args(flags)
    store = ModelStore(where.models_dir, signing_key())
    published = store.open_version(where.model, store.resolve(ModelRef(where.model)))
    lines = metric_lines("heldout", json.loads(published.files["metadata.json"])["metrics"])
    try:
        if args.validation:
            lines += metric_lines("validation", validation_metrics(store, where.model, where.target, args.validation))
    except MljobsError as exc:
        print(f"train failed: validation channel: {exc}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
