"""Ad-hoc SQL scoring throughput: DuckDB SQL (the ml_predict table function and the
predict_<model> scalar UDF) and Spark SQL (local[2]) against the batch job, on the same 1M-row
Parquet file and model, run in turn.

    .venv/bin/python bench/sql_predict.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from common import wide_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for sub in ("out", "runs"):
            (work / sub).mkdir()
        pq.write_table(wide_table(50_000, seed=1), work / "train.parquet")
        common = ["--models-dir", str(work / "models"), "--runs-dir", str(work / "runs"), "--log-level", "WARNING"]
        subprocess.run([sys.executable, "-m", "mljobs.jobs.train", "--input", str(work / "train.parquet"), "--target", "label",
                        "--model", "bench", *common], check=True, stdout=subprocess.DEVNULL)
        source = work / "in.parquet"
        pq.write_table(wide_table(args.rows, seed=2).drop_columns(["label"]), source)

        from pyspark.sql import SparkSession

        from mljobs.sql.spark_udf import prediction_udf

        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        spark.udf.register("predict_bench", prediction_udf(spark, work / "models", "bench"))
        spark.read.parquet(str(source)).createOrReplaceTempView("rows")

        def batch_job() -> None:
            subprocess.run([sys.executable, "-m", "mljobs.jobs.predict", "--model", "bench", "--input", str(source),
                            "--output", str(work / "out"), "--force", *common], check=True, stdout=subprocess.DEVNULL)

        def duckdb_sql() -> None:
            subprocess.run([sys.executable, "-m", "mljobs.jobs.sql", "--output", str(work / "out"), "--show", "0", *common,
                            f"SELECT predict_bench(t) AS prediction FROM '{source}' t"], check=True, stdout=subprocess.DEVNULL)

        def duckdb_ml_predict() -> None:
            subprocess.run([sys.executable, "-m", "mljobs.jobs.sql", "--output", str(work / "out"), "--show", "0", *common,
                            f"SELECT predicted_label AS prediction FROM ml_predict('bench', TABLE '{source}')"],
                           check=True, stdout=subprocess.DEVNULL)

        def spark_sql() -> None:
            spark.sql("SELECT predict_bench(struct(*)) AS prediction FROM rows").write.mode("overwrite").parquet(str(work / "spark-out"))

        runs = {"batch job": batch_job, "DuckDB ml_predict": duckdb_ml_predict, "DuckDB predict_<model>": duckdb_sql,
                "Spark SQL local[2]": spark_sql}
        times: dict[str, list[float]] = {name: [] for name in runs}
        spark_sql()  # warm the JVM and the Python workers once
        for _ in range(args.repeat):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        spark.stop()
    base = sorted(times["batch job"])[len(times["batch job"]) // 2]
    print(f"\nSQL scoring, {args.rows:,} rows x 32 features, Parquet in and out (median of {args.repeat})")
    for name, t in times.items():
        median = sorted(t)[len(t) // 2]
        print(f"  {name:<24} {args.rows / median:>10,.0f} rows/s   x{base / median:.2f} of the batch job's rows/s")


if __name__ == "__main__":
    main()
