"""The table functions in Spark SQL: each call in the query text becomes a temporary view of its
inner query's DataFrame scored with mapInArrow (Arrow batches in and out on the executors, the
verified model shipped to them as a zip, as for the UDFs), then the query runs as Spark SQL:

    from mljobs.sql.spark_tables import ml_sql
    ml_sql(spark, "SELECT * FROM ml_predict('demo@production', TABLE new)", "/models").show()
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa

from ..errors import BadInputError, InvalidRecordsError, ModelError, UsageError
from ..predictor import Predictor
from ..store import ModelRef
from . import chosen_ref, model_choices
from .spark_udf import _predictor, ship
from .table_call import TableCall, find_calls, substitute
from .table_functions import Scoring, all_batches, check_input, evaluate, feature_importance

_VIEW_NUMBERS = itertools.count(1)


def ml_sql(spark: Any, query: str, models_dir: str | Path, models: str | Iterable[str] = ()) -> Any:
    """spark.sql(query) with ml_predict, ml_explain_predict, ml_evaluate and ml_feature_importance;
    `models` ("NAME@ALIAS" or "NAME:VERSION") choose what a call naming the bare model scores
    with, as the SQL job's --model does."""
    return _ml_sql(spark, query, models_dir, model_choices([models] if isinstance(models, str) else models))


def _ml_sql(spark: Any, query: str, models_dir: str | Path, chosen: dict[str, ModelRef]) -> Any:
    calls = find_calls(query, backslash=True)  # Spark's strings take backslash escapes
    names = []
    for call in calls:
        name = f"__mljobs_{next(_VIEW_NUMBERS)}"
        relation(spark, call, models_dir, chosen).createOrReplaceTempView(name)
        names.append(name)
    return spark.sql(substitute(query, calls, names, quote="`"))


def shipped_model(spark: Any, call: TableCall, models_dir: str | Path, chosen: dict[str, ModelRef]) -> tuple[str, Predictor]:
    try:
        return ship(spark, models_dir, chosen_ref(call.model, chosen))
    except ModelError as exc:
        raise ModelError(f"{call.describe()}: {exc}") from None


def relation(spark: Any, call: TableCall, models_dir: str | Path, chosen: dict[str, ModelRef]) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    shipped, local = shipped_model(spark, call, models_dir, chosen)
    if call.function == "ml_feature_importance":
        return spark.createDataFrame(feature_importance(local).to_pandas())
    rows = _ml_sql(spark, call.rows_query(), models_dir, chosen)
    input_schema = to_arrow_schema(rows.schema)
    check_input(call, input_schema, local)
    name, version = local.name, local.version
    if call.function == "ml_evaluate":
        return evaluated(spark, call, rows, shipped, local)
    output = Scoring(call, local, input_schema).output_schema()

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        rows = all_batches(batches)
        first = next(rows, None)
        if first is None:
            return
        # Spark runs a task per core: one thread each.
        scoring = Scoring(call, _predictor(shipped, name, version), first.schema, threads=1)
        try:
            yield from scoring.stream(itertools.chain([first], rows))
        except BadInputError as exc:
            raise in_partition(exc) from None

    return rows.mapInArrow(score, from_arrow_schema(output))


def in_partition(error: BadInputError) -> BadInputError:
    """The error with its row numbers said to be what they are: counted from 0 within the task's
    Spark partition (a task does not know where its partition starts)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    partition = f"Spark partition {context.partitionId()}" if context else "its Spark partition"
    error.args = (f"{error} (rows counted from 0 within {partition})",)
    return error


def evaluated(spark: Any, call: TableCall, rows: Any, shipped: str, local: Predictor) -> Any:
    """ml_evaluate: the executors score their rows and return (label code, raw scores); the
    driver computes the metrics over all of them, as training did over the held-out rows."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from .table_functions import encode_labels

    name, version = local.name, local.version
    width = max(1, len(local.schema.classes))
    pairs = pa.schema([("truth", pa.float64())] + [(f"raw_{i}", pa.float64()) for i in range(width)])

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        predictor = _predictor(shipped, name, version)
        first_row = 0
        for batch in all_batches(batches):
            try:
                features = predictor.featurizer.transform_table(batch, first_row)
                if features.errors:
                    raise InvalidRecordsError(features.errors)
                truth = encode_labels(call, predictor, batch.column(predictor.schema.target), first_row)
            except BadInputError as exc:
                raise in_partition(exc) from None
            first_row += batch.num_rows
            raw = predictor.predict_raw(features.matrix, 1).reshape(batch.num_rows, width)
            yield pa.RecordBatch.from_arrays([pa.array(truth)] + [pa.array(raw[:, i]) for i in range(width)], schema=pairs)

    if local.schema.target not in rows.columns:
        raise UsageError(f"{call.describe()}: the rows have no column '{local.schema.target}', the model's label")
    scored = rows.mapInArrow(score, from_arrow_schema(pairs)).toArrow()
    if scored.num_rows == 0:
        return spark.createDataFrame(evaluate(call, local, []).to_pandas())
    truth = scored.column("truth").to_numpy()
    raw = np.column_stack([scored.column(f"raw_{i}").to_numpy() for i in range(width)])
    from ..training import score as metrics_of

    metrics = metrics_of(local.schema, truth, raw if local.is_classifier else raw[:, 0])
    return spark.createDataFrame([tuple(metrics.values())], list(metrics))
