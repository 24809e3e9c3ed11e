"""Batch scoring, free of any CLI: stream record batches through the model into a predictions
file and a rejects file, counting every row into exactly one of them."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from . import demo
from .datafile import DataFile
from .errors import BadInputError, FieldError, InvalidRecordsError
from .explain_columns import explanation_columns
from .featurize import Features
from .outputs import OutputRoot, TableWriter
from .predictor import Predictor
from .schema import NUMERIC
from .tableio import fingerprint_in_background, iter_batches, quick_fingerprint

log = logging.getLogger("mljobs.predict")


@dataclass
class BatchOptions:
    keep_columns: list[str] = field(default_factory=list)
    proba: bool = False
    strict: bool = False
    fmt: str = "parquet"
    chunk_rows: int = 100_000
    threads: int = 0
    explain: bool = False
    top_k: int | None = None

    def output_key(self) -> dict[str, Any]:
        """The options that change what the output holds (and so a rerun's identity)."""
        key: dict[str, Any] = {"keep_columns": self.keep_columns, "proba": self.proba, "strict": self.strict, "format": self.fmt}
        if self.explain:  # only when asked, so runs without it keep the identity they had
            key.update(explain=True, top_k=self.top_k)
        return key


@dataclass
class BatchCounts:
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    unseen_categories: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """Where rows come from: files, or the embedded demo rows when there are none."""

    files: tuple[DataFile, ...]
    # Each local CSV file's hash, put here by the reader as it reads the file to its end.
    read_hashes: dict[DataFile, str] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return ",".join(str(f) for f in self.files) or "demo"

    def fingerprint(self) -> str:
        """Cheap (names, sizes, the files' ends): what a rerun is looked up by."""
        return quick_fingerprint(list(self.files)) if self.files else f"demo:{demo.scoring_table().num_rows}"

    def content_hash(self) -> Callable[[], str]:
        """The full hash of the contents; call the result to wait for it. It confirms a rerun that
        the cheap fingerprint found. Local CSV files are hashed by the reader from the bytes it
        parses (so read once), the other files on a thread started now."""
        if not self.files:
            return lambda: self.fingerprint()
        csv = [f for f in self.files if isinstance(f, Path) and f.suffix.lower() == ".csv"]
        return fingerprint_in_background(list(self.files), csv, self.read_hashes)

    def batches(self, chunk_rows: int, predictor: Predictor) -> Iterator[tuple[str, int, pa.RecordBatch]]:
        """(file name, first row number in that file, batch), rows numbered from 0 per file."""
        current, first_row = None, 0
        for origin, batch in self._batches_by_origin(chunk_rows, predictor):
            if origin != current:
                current, first_row = origin, 0
            yield Path(origin).name, first_row, batch
            first_row += batch.num_rows

    def _batches_by_origin(self, chunk_rows: int, predictor: Predictor) -> Iterator[tuple[str, pa.RecordBatch]]:
        """(the file each batch came from, or "demo"; the batch)."""
        if not self.files:
            for batch in demo.scoring_table().to_batches(max_chunksize=chunk_rows):
                yield "demo", batch
            return
        # CSV numeric features are parsed as numbers; a block where that fails is read with every
        # feature as text, so that the featurizer names the row and column of each bad value.
        text_columns = {f.name: pa.string() for f in predictor.schema.features}
        typed_columns = {f.name: pa.float64() if f.kind == NUMERIC else pa.string() for f in predictor.schema.features}
        for path, batch in iter_batches(list(self.files), chunk_rows, text_columns, typed_columns, self.read_hashes):
            yield str(path), batch


def run_key(predictor: Predictor, source_fingerprint: str, options: BatchOptions) -> str:
    """Same model version, same input, same output options: the same run."""
    identity = {"model": predictor.name, "version": predictor.version, "input": source_fingerprint, **options.output_key()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def score_source(predictor: Predictor, source: Source, folder: OutputRoot, options: BatchOptions) -> BatchCounts:
    """Two stages on two cores: while one batch is scored (the compiled predictor and LightGBM
    release the GIL), the next is read and featurized. At most two batches are held at once."""
    counts = BatchCounts()
    predictions = TableWriter(folder / f"predictions.{options.fmt}", options.fmt)
    rejects = TableWriter(folder / f"rejects.{options.fmt}", options.fmt)
    in_flight: deque[tuple[str, int, pa.RecordBatch, Features, Future[dict[str, Any]]]] = deque()

    def finish_oldest() -> None:
        name, first_row, batch, features, scored = in_flight.popleft()
        good = features.good_rows
        kept = {c: batch.column(c) if not features.errors else batch.column(c).filter(pa.array(good)) for c in options.keep_columns}
        predictions.write(pa.RecordBatch.from_pydict({**kept, **scored.result()}))
        if features.errors:
            rejects.write(_rejects_batch(name, batch, features.errors, first_row, options.keep_columns))
        counts.rows_in += batch.num_rows
        counts.rows_out += int(np.count_nonzero(good))
        counts.rejected += batch.num_rows - int(np.count_nonzero(good))
        for column, n in features.unseen.items():
            counts.unseen_categories[column] = counts.unseen_categories.get(column, 0) + n
        log.info("scored %d rows (%d rejected)", counts.rows_in, counts.rejected)

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mljobs-score") as scorer:
            for name, first_row, batch in source.batches(options.chunk_rows, predictor):
                missing = [c for c in options.keep_columns if c not in batch.schema.names]
                if missing:
                    raise BadInputError(f"--keep-columns names column '{missing[0]}', which is not in {name}")
                features = predictor.featurizer.transform_table(batch, first_row)
                if features.errors and options.strict:
                    raise InvalidRecordsError(features.errors)
                in_flight.append((name, first_row, batch, features,
                                  scorer.submit(scored_columns, predictor, features, options)))
                if len(in_flight) > 1:
                    finish_oldest()
            while in_flight:
                finish_oldest()
    finally:
        predictions.close()
        rejects.close()
    return counts


def scored_columns(predictor: Predictor, features: Features, options: BatchOptions) -> dict[str, Any]:
    """The prediction columns of a batch's good rows, and its explanations when asked (--explain)."""
    columns: dict[str, Any] = predictor.score_features(features, options.proba, options.threads)
    if options.explain:
        matrix = features.matrix[features.good_rows] if features.errors else features.matrix
        columns.update(explanation_columns(predictor, matrix, options.top_k, options.threads, as_json=options.fmt == "csv"))
    return columns


def _rejects_batch(name: str, batch: pa.RecordBatch, errors: list[FieldError], first_row: int, keep_columns: list[str]) -> pa.RecordBatch:
    """One line per rejected row: file, row, every reason, and the kept columns to find it by."""
    reasons: dict[int, list[str]] = {}
    for e in errors:
        if e.row is not None:  # always set for a table's rows
            reasons.setdefault(e.row, []).append(f"{e.field}: {e.reason}")
    rows = sorted(reasons)
    kept = {c: batch.column(c).take(pa.array([r - first_row for r in rows])) for c in keep_columns}
    return pa.RecordBatch.from_pydict({
        "file": [name] * len(rows), "row": rows, **kept, "reason": ["; ".join(reasons[r]) for r in rows],
    })
