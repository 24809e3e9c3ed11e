"""The batch prediction job: stream rows through the model into a committed output folder
(python -m mljobs.jobs.predict)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa

from .. import demo
from ..errors import BadInputError, InvalidRecordsError, UsageError
from ..outputs import TableWriter, check_writable, committed_folder, run_folder
from ..predictor import Predictor, load_predictor
from ..runs import RunRecord
from ..store import ModelRef, ModelStore
from ..tableio import iter_batches, resolve_inputs
from .common import add_common_flags, run_job

log = logging.getLogger("mljobs.predict")

DEFAULTS: dict[str, Any] = {
    "model": demo.MODEL,
    "input": None,
    "output": "/data/output",
    "format": "parquet",
    "keep_columns": [],
    "proba": False,
    "chunk_rows": 100_000,
    "threads": 0,
}


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="predict", description="Score rows with a stored model.")
    p.add_argument("--model", help="NAME, NAME@ALIAS or NAME:VERSION (default alias: production, else latest)")
    p.add_argument("--input", help="CSV or Parquet: a file, a folder of parts or a glob (default: the demo's new rows)")
    p.add_argument("--output", help="output root folder (default /data/output)")
    p.add_argument("--format", choices=["parquet", "csv"])
    p.add_argument("--keep-columns", type=_columns, help="input columns to copy next to the predictions, comma-separated")
    p.add_argument("--proba", action="store_true", default=None, help="add a proba_<class> column per class")
    p.add_argument("--chunk-rows", type=int, help="rows scored at a time (default 100000)")
    p.add_argument("--threads", type=int, help="prediction threads (default: all cores)")
    add_common_flags(p)
    return p


def column_types(predictor: Predictor) -> dict[str, pa.DataType]:
    """CSV feature columns are read as text: every block gets the same type whatever it holds,
    and the featurizer parses them, naming the row and column of any bad value."""
    return {f.name: pa.string() for f in predictor.schema.features}


def input_batches(args: argparse.Namespace, predictor: Predictor) -> Iterator[pa.RecordBatch]:
    if args.input is None:
        yield from demo.scoring_table().to_batches(max_chunksize=args.chunk_rows)
        return
    for _, batch in iter_batches(resolve_inputs(args.input), args.chunk_rows, column_types(predictor)):
        yield batch


def score_batch(predictor: Predictor, batch: pa.RecordBatch, first_row: int, args: argparse.Namespace) -> pa.RecordBatch:
    missing = [c for c in args.keep_columns if c not in batch.schema.names]
    if missing:
        raise BadInputError(f"--keep-columns names column '{missing[0]}', which is not in the input")
    features = predictor.featurizer.transform_table(batch, first_row)
    if features.errors:
        raise InvalidRecordsError(features.errors)
    raw = predictor.predict_raw(features.matrix, args.threads)
    columns = {c: batch.column(c) for c in args.keep_columns}
    columns.update(predictor.output_columns(raw, args.proba))
    return pa.RecordBatch.from_pydict(columns)


def execute(args: argparse.Namespace, record: RunRecord) -> None:
    if args.chunk_rows < 1:
        raise UsageError("--chunk-rows must be at least 1")
    output_root = Path(args.output)
    check_writable(output_root)
    record.input = args.input or "demo"
    predictor = load_predictor(ModelStore(args.models_dir), ModelRef.parse(args.model))
    record.model = {"name": predictor.name, "version": predictor.version}
    final = run_folder(output_root, predictor.name, record.run_id)
    log.info("scoring %s with %s:%s", record.input, predictor.name, predictor.version)
    rows_in = 0
    with committed_folder(final) as staging:
        writer = TableWriter(staging / f"predictions.{args.format}", args.format)
        try:
            for batch in input_batches(args, predictor):
                writer.write(score_batch(predictor, batch, rows_in, args))
                rows_in += batch.num_rows
                log.info("scored %d rows", rows_in)
        finally:
            writer.close()
        if rows_in == 0:
            raise BadInputError(f"input {record.input} has no rows")
    record.rows = {"in": rows_in, "out": writer.rows, "rejected": 0}
    record.output = str(final)
    log.info("wrote %d predictions to %s", writer.rows, final)


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("predict", parser(), DEFAULTS, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
