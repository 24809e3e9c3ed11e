"""Stored models as Spark functions, for data that outgrows one machine.

The verified version's files are shipped to the executors as a zip with SparkContext.addArchive
(Spark unpacks it on each node; a folder can be added with addFile only in local mode); each
Python worker loads (and verifies) it once and scores Arrow batches through the same core as the
batch job. Two forms:

    spark.udf.register("predict_demo", prediction_udf(spark, "/models", "demo"))
    spark.sql("SELECT *, predict_demo(struct(*)) AS churn FROM new")

    score_dataframe(df, spark, "/models", "demo")        # whole table, via mapInPandas
"""

from __future__ import annotations

import hashlib
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa

from ..errors import InvalidRecordsError
from ..manifest import VerifiedVersion, manifest_text
from ..predictor import Predictor, load_verified, load_version
from ..signing import signing_key
from ..store import ModelRef, ModelStore
from . import label_type, score_rows

SPARK_TYPES = {pa.string(): "string", pa.int64(): "bigint", pa.bool_(): "boolean", pa.float64(): "double"}


def ship(spark: Any, models_dir: str | Path, ref: ModelRef | str) -> tuple[str, Predictor]:
    """Load (and so verify) the version on the driver, then ship its files to every executor;
    returns the shipped archive's name and the driver's copy of the model."""
    from pyspark import SparkFiles

    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    store = ModelStore(models_dir, signing_key())  # a folder or s3://bucket/prefix
    verified = store.open_version(ref.name, store.resolve(ref))
    local = load_verified(verified)
    # Named by its contents: Spark refuses one name from two paths, so the same bytes ship once.
    every_file = {file: hashlib.sha256(data).hexdigest() for file, data in verified.files.items()}
    digest = hashlib.sha256(manifest_text(every_file).encode()).hexdigest()[:16]
    shipped = f"mljobs-{ref.name}-{verified.version}-{digest}.zip"
    context = spark.sparkContext
    if not any(uri.rsplit("/", 1)[-1] == shipped for uri in context.listArchives):
        # The driver's SparkFiles folder is deleted when the context stops; a subfolder keeps the
        # zip apart from where local mode unpacks it.
        staging = Path(SparkFiles.getRootDirectory()) / "mljobs-staging" / shipped
        write_zip(verified, staging)
        context.addArchive(str(staging))
    return shipped, local


def write_zip(verified: VerifiedVersion, path: Path) -> None:
    """The version's checked bytes (MANIFEST included) as a zip at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file, data in sorted(verified.files.items()):
            archive.writestr(file, data)


@lru_cache(maxsize=8)
def _predictor(shipped: str, name: str, version: str) -> Predictor:
    """On an executor: the shipped files (unpacked by Spark), verified again after their journey, loaded once."""
    from pyspark import SparkFiles

    return load_version(Path(SparkFiles.get(shipped)), name, version, key=signing_key())


def _spark_type(predictor: Predictor, proba: bool) -> str:
    if proba:
        return "struct<" + ", ".join(f"`{c}`: double" for c in predictor.schema.classes) + ">"
    return SPARK_TYPES[label_type(predictor)]


def prediction_udf(spark: Any, models_dir: str | Path, ref: ModelRef | str, proba: bool = False) -> Any:
    """A pandas UDF over struct(*) of the row: predictions, or class probabilities."""
    from pyspark.sql.functions import pandas_udf  # type: ignore[attr-defined]

    shipped, local = ship(spark, models_dir, ref)
    name, version = local.name, local.version

    def rows_of(frame: pd.DataFrame) -> pa.Table:
        return pa.Table.from_pandas(frame, preserve_index=False)

    # Spark picks the UDF kind from the type hints: Series out for labels, DataFrame for a struct.
    def labels(rows: pd.DataFrame) -> pd.Series:
        return score_rows(_predictor(shipped, name, version), rows_of(rows), proba=False).to_pandas()

    def probabilities(rows: pd.DataFrame) -> pd.DataFrame:
        result = score_rows(_predictor(shipped, name, version), rows_of(rows), proba=True)
        return pd.DataFrame({f.name: result.field(i).to_pandas() for i, f in enumerate(result.type)})

    return pandas_udf(probabilities if proba else labels, _spark_type(local, proba))


def score_dataframe(df: Any, spark: Any, models_dir: str | Path, ref: ModelRef | str, proba: bool = True) -> Any:
    """The whole table with `prediction` (and `proba_<class>`) columns added, via mapInPandas."""
    shipped, local = ship(spark, models_dir, ref)
    name, version = local.name, local.version
    extra = [f"prediction {SPARK_TYPES[label_type(local)]}"]
    if proba and local.is_classifier:
        extra += [f"`proba_{c}` double" for c in local.schema.classes]
    schema = ", ".join([f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema.fields] + extra)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        predictor = _predictor(shipped, name, version)
        for frame in batches:
            columns, features = predictor.score_table(pa.Table.from_pandas(frame, preserve_index=False), proba, threads=1)
            if features.errors:
                raise InvalidRecordsError(features.errors)
            yield frame.assign(**{k: v.to_pandas() for k, v in columns.items()})

    return df.mapInPandas(score, schema)
