"""What BigQuery-ML-like table functions compute, whatever the engine: a batch of input rows in,
the same rows with BigQuery ML's output columns out (ml_predict, ml_explain_predict); the
training metrics over labelled rows (ml_evaluate); global importance (ml_feature_importance).

Each batch is scored whole, through the same featurizer and model as the batch job: no Python
call per row, so the engines' readers and writers run at their own speed.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadInputError, FieldError, InvalidRecordsError, UsageError
from ..explain_columns import EXPLANATION_FIELDS, explanation_columns, require_explanations
from ..predictor import Predictor
from .table_call import TableCall


def label_type(predictor: Predictor) -> pa.DataType:
    return pa.array(list(predictor.schema.classes)).type if predictor.is_classifier else pa.float64()


def probs_type(predictor: Predictor) -> pa.DataType:
    return pa.list_(pa.struct([("label", label_type(predictor)), ("prob", pa.float64())]))


@dataclass
class Scoring:
    """ml_predict / ml_explain_predict of one model over rows of one input schema."""

    call: TableCall
    predictor: Predictor
    input_schema: pa.Schema
    threads: int = 0

    def __post_init__(self) -> None:
        check_options(self.call, self.predictor)
        clash = sorted(set(self.input_schema.names) & {f.name for f in self.output_fields()})
        if clash:
            raise UsageError(f"{self.call.describe()}: the input already has a column '{clash[0]}', which the function adds")
        self.schema = self.output_schema()

    @property
    def explain(self) -> bool:
        return self.call.function == "ml_explain_predict"

    @property
    def target(self) -> str:
        return f"predicted_{self.predictor.schema.target}"

    def output_fields(self) -> list[pa.Field]:
        fields = [pa.field(self.target, label_type(self.predictor))]
        if self.explain:
            if self.predictor.is_classifier:
                fields.append(pa.field("probability", pa.float64()))
            return fields + EXPLANATION_FIELDS
        if self.predictor.is_classifier:
            fields.append(pa.field(f"{self.target}_probs", probs_type(self.predictor)))
        return fields

    def output_schema(self) -> pa.Schema:
        schema = self.input_schema
        for f in self.output_fields():
            schema = schema.append(f)
        return schema

    def score(self, batch: pa.RecordBatch, first_row: int = 0) -> pa.RecordBatch:
        return self.finish(batch, self.featurize(batch, first_row))

    def featurize(self, batch: pa.RecordBatch, first_row: int) -> np.ndarray:
        features = self.predictor.featurizer.transform_table(batch, first_row)
        if features.errors:  # rows are numbered in the function's input, from 0
            raise InvalidRecordsError(features.errors)
        return features.matrix

    def finish(self, batch: pa.RecordBatch, matrix: np.ndarray) -> pa.RecordBatch:
        """The batch with the function's columns added, from its featurized matrix."""
        raw = self.predictor.predict_raw(matrix, self.threads)
        columns = list(batch.columns) + list(self.output_columns(matrix, raw).values())
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def output_columns(self, matrix: np.ndarray, raw: np.ndarray) -> dict[str, pa.Array]:
        predictor = self.predictor
        if not predictor.is_classifier:
            out: dict[str, pa.Array] = {self.target: pa.array(raw, pa.float64())}
            if self.explain:
                out.update(explanation_columns(predictor, matrix, self.top_k, self.threads))
            return out
        chosen = self.chosen_classes(raw)
        classes = pa.array(list(predictor.schema.classes))
        out = {self.target: classes.take(pa.array(chosen))}
        if self.explain:
            out["probability"] = pa.array(raw[np.arange(len(raw)), chosen], pa.float64())
            out.update(explanation_columns(predictor, matrix, self.top_k, self.threads, chosen=chosen))
            return out
        k = len(classes)
        labels = classes.take(pa.array(np.tile(np.arange(k), len(raw))))
        probs = pa.StructArray.from_arrays([labels, pa.array(raw.ravel(), pa.float64())], names=["label", "prob"])
        out[f"{self.target}_probs"] = pa.ListArray.from_arrays(pa.array(np.arange(0, len(raw) * k + 1, k, dtype=np.int32)), probs)
        return out

    @property
    def top_k(self) -> int | None:
        top_k = self.call.options.get("top_k")
        return None if top_k is None else int(top_k)

    def chosen_classes(self, raw: np.ndarray) -> np.ndarray:
        """Each row's class: the most likely one, or for a binary model given a threshold, the
        second class when its probability is above the threshold (BigQuery ML's rule)."""
        threshold = self.call.options.get("threshold")
        if threshold is None:
            return np.asarray(np.argmax(raw, axis=1), dtype=np.int64)
        return (raw[:, 1] > threshold).astype(np.int64)

    def stream(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Scored batches in order. While one batch is scored (LightGBM and the compiled
        predictor release the GIL) the next is read and featurized, as in the batch job."""
        pending: deque[Future[pa.RecordBatch]] = deque()
        first_row = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mljobs-sql-score") as scorer:
            for batch in batches:
                pending.append(scorer.submit(self.finish, batch, self.featurize(batch, first_row)))
                first_row += batch.num_rows
                if len(pending) > 1:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def evaluate(call: TableCall, predictor: Predictor, batches: Iterable[pa.RecordBatch]) -> pa.Table:
    """ml_evaluate: the metrics training stored, computed the same way over the given rows."""
    from ..training import score

    target = predictor.schema.target
    truth: list[np.ndarray] = []
    raw: list[np.ndarray] = []
    seen = 0
    for batch in batches:
        if target not in batch.schema.names:
            raise UsageError(f"{call.describe()}: the rows have no column '{target}', the model's label")
        features = predictor.featurizer.transform_table(batch, seen)
        if features.errors:
            raise InvalidRecordsError(features.errors)
        truth.append(encode_labels(call, predictor, batch.column(target), seen))
        raw.append(predictor.predict_raw(features.matrix))
        seen += batch.num_rows
    if not seen:
        raise BadInputError(f"{call.describe()}: the query gave no rows to evaluate on")
    metrics = score(predictor.schema, np.concatenate(truth), np.concatenate(raw))
    return pa.table({name: pa.array([value], pa.float64()) for name, value in metrics.items()})


def encode_labels(call: TableCall, predictor: Predictor, column: pa.Array, first_row: int) -> np.ndarray:
    """The label column as training encoded it (class index, or the value for regression)."""
    target = predictor.schema.target
    nulls = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
    if len(nulls):
        raise BadInputError(f"{call.describe()}: row {first_row + int(nulls[0])}, column '{target}': the label is missing")
    if not predictor.is_classifier:
        try:
            return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise BadInputError(f"{call.describe()}: column '{target}' must hold numbers") from None
    classes = pa.array(list(predictor.schema.classes))
    try:
        codes = pc.index_in(column.cast(classes.type), value_set=classes)
        unknown = np.flatnonzero(codes.is_null().to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # not even of the classes' type
        codes, unknown = None, np.array([0])
    if codes is None or len(unknown):
        row = int(unknown[0])
        raise BadInputError(f"{call.describe()}: row {first_row + row}, column '{target}': {column[row].as_py()!r} is not "
                            f"one of the model's classes ({', '.join(map(str, predictor.schema.classes))})")
    return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.float64)


def feature_importance(predictor: Predictor) -> pa.Table:
    """ml_feature_importance: one row per feature, as BigQuery ML's ML.FEATURE_IMPORTANCE."""
    rows = predictor.feature_importance()
    return pa.table({
        "feature": pa.array([r["feature"] for r in rows], pa.string()),
        "importance_weight": pa.array([r["importance_weight"] for r in rows], pa.int64()),
        "importance_gain": pa.array([r["importance_gain"] for r in rows], pa.float64()),
    })


def check_options(call: TableCall, predictor: Predictor) -> None:
    """The call's options against the model, before any row is read."""
    if call.options.get("threshold") is not None and len(predictor.schema.classes) != 2:
        raise UsageError(f"{call.describe()}: threshold is for binary classifiers; this model is a "
                         f"{'multi-class classifier' if predictor.is_classifier else 'regressor'}")
    if call.function == "ml_explain_predict":
        require_explanations(predictor)


def check_input(call: TableCall, schema: pa.Schema, predictor: Predictor) -> None:
    """Before any row is read: the options must fit the model, every feature must be a column of the input."""
    check_options(call, predictor)
    missing = [f for f in predictor.schema.names if f not in schema.names]
    if missing:
        raise InvalidRecordsError([FieldError(name, f"column missing from the input of {call.describe()}") for name in missing])


def all_batches(reader: Any) -> Iterator[pa.RecordBatch]:
    """Batches of a RecordBatchReader (or any iterable of them), skipping empty ones."""
    for batch in reader:
        if batch.num_rows:
            yield batch
