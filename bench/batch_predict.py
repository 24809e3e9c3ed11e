"""Batch prediction throughput and memory: the mljobs predict job against (i) a naive pandas
script (read everything, predict, write) and (ii) `mlflow models predict`, all scoring the same
LightGBM booster on the same 1M rows, run in turn; then mljobs' peak memory at 10M vs 1M rows.
mljobs runs twice: in a signed store (its compiled predictor) and without the key (LightGBM).
Also: the CSV parsers side by side (pyarrow reading the features as text, pyarrow typed from the
model's schema, DuckDB's typed reader; each up to the featurized matrix), and the start-up of a
predict job container on a 1-row file, container start to exit, for the image of this checkout
and one built from an earlier commit (--before-ref, default HEAD).

    .venv/bin/python bench/batch_predict.py [--rows 1000000] [--large-rows 10000000] [--repeat 3]
                                            [--skip-mlflow] [--skip-containers] [--before-ref HEAD]

Targets (issue 4, issue 19): CSV at least 4x the rows/s of `mlflow models predict` and 0.6x our
own Parquet rows/s; peak RSS at 10M rows within 1.5x of 1M. MLflow is installed once into a
cache folder outside the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from common import MLFLOW_PACKAGES, cached_venv, interleaved, measure, measure_interleaved, numeric_table  # noqa: E402
from mljobs.cpus import usable_cpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


NAIVE_PANDAS = """
import sys, lightgbm, pandas as pd
model, source, target = sys.argv[1:4]
frame = pd.read_parquet(source) if source.endswith(".parquet") else pd.read_csv(source)
booster = lightgbm.Booster(model_file=model)
frame["prediction"] = booster.predict(frame[booster.feature_name()])
frame[["prediction"]].to_parquet(target) if target.endswith(".parquet") else frame[["prediction"]].to_csv(target, index=False)
"""

SAVE_MLFLOW_MODEL = """
import sys, lightgbm, mlflow.lightgbm
mlflow.lightgbm.save_model(lightgbm.Booster(model_file=sys.argv[1]), sys.argv[2])
"""


KEY = secrets.token_hex(32)


def mljobs_command(work: Path, source: Path, fmt: str, signed: bool = True) -> list[str]:
    return ["env", f"MLJOBS_SIGNING_KEY={KEY if signed else ''}", sys.executable, "-m", "mljobs.jobs.predict", "--model", "bench", "--input", str(source), "--format", fmt,
            "--force", "--models-dir", str(work / "models"), "--runs-dir", str(work / "runs"), "--output", str(work / "out"),
            "--log-level", "WARNING"]


def csv_parsers(models: Path, source: Path, repeat: int) -> dict[str, float]:
    """Seconds from the CSV file to the featurized matrices, by parser, in this process."""
    import duckdb

    from mljobs import csvdialect
    from mljobs.predictor import load_predictor
    from mljobs.schema import NUMERIC
    from mljobs.store import ModelStore
    from mljobs.tableio import iter_batches

    predictor = load_predictor(ModelStore(models), "bench")
    features = predictor.schema.features
    text = {f.name: pa.string() for f in features}
    typed = {f.name: pa.float64() if f.kind == NUMERIC else pa.string() for f in features}

    def featurize(batches: Callable[[], Iterable[pa.RecordBatch]]) -> Callable[[], None]:
        def run() -> None:
            for batch in batches():
                predictor.featurizer.transform_table(batch)
        return run

    def duck() -> Iterable[pa.RecordBatch]:
        types = {f.name: "DOUBLE" if f.kind == NUMERIC else "VARCHAR" for f in features}
        return duckdb.connect().sql(f"SELECT * FROM {csvdialect.duckdb_read_csv(str(source), types)}").to_arrow_reader(100_000)

    return interleaved({
        "pyarrow, features as text": featurize(lambda: (b for _, b in iter_batches([source], 100_000, text))),
        "pyarrow, typed from the schema": featurize(lambda: (b for _, b in iter_batches([source], 100_000, text, typed))),
        "DuckDB read_csv, typed": featurize(duck),
    }, repeat)


def build_image(tag: str, ref: str | None) -> None:
    """The predict image of this checkout (ref None) or of a commit (its files, from git archive)."""
    with tempfile.TemporaryDirectory() as context:
        if ref:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", context], input=archive, check=True)
        root = Path(context) if ref else REPO
        built = subprocess.run(["docker", "build", "-q", "-f", str(root / "images/predict/Dockerfile"), "-t", tag, str(root)],
                               capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"building {tag} failed:\n{built.stderr[-2000:]}")


def container_startup(tag: str, work: Path, signed: bool, repeat: int) -> float:
    """Median seconds of `docker run` of a predict job on a 1-row file, container start to exit."""
    command = ["docker", "run", "--rm", "--network", "none", "--user", f"{os.getuid()}:{os.getgid()}",
               "-e", f"MLJOBS_SIGNING_KEY={KEY if signed else ''}",
               "-v", f"{work / 'models'}:/models:ro", "-v", f"{work / 'one'}:/data/input:ro", "-v", f"{work / 'startup-out'}:/data/output",
               "--tmpfs", "/runs", tag, "--model", "bench", "--input", "/data/input/one.csv", "--force", "--log-level", "WARNING"]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(work: Path, before_ref: str, repeat: int) -> None:
    (work / "one").mkdir()
    (work / "startup-out").mkdir()
    pacsv.write_csv(numeric_table(1, seed=5).drop_columns(["label"]), work / "one" / "one.csv")
    tags = {f"before ({before_ref})": f"mljobs-predict:bench-before-{secrets.token_hex(3)}",
            "after (this checkout)": f"mljobs-predict:bench-after-{secrets.token_hex(3)}"}
    try:
        for tag, ref in zip(tags.values(), (before_ref, None)):
            build_image(tag, ref)
        print(f"\npredict job start-up on a 1-row CSV, container start to exit (median of {repeat})")
        for signed in (False, True):
            seconds = {name: container_startup(tag, work, signed, repeat) for name, tag in tags.items()}
            print(f"  {'signed (compiled)' if signed else 'unsigned (LightGBM)':<20} "
                  + "   ".join(f"{name}: {s:.2f} s" for name, s in seconds.items()))
    finally:
        subprocess.run(["docker", "rmi", *tags.values()], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-containers", action="store_true")
    parser.add_argument("--before-ref", default="HEAD", help="the commit whose predict image is 'before' in the start-up figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        pq.write_table(numeric_table(50_000, seed=1), work / "train.parquet")
        subprocess.run([sys.executable, "-m", "mljobs.jobs.train", "--input", str(work / "train.parquet"), "--target", "label",
                        "--model", "bench", "--models-dir", str(work / "models"), "--runs-dir", str(work / "runs"),
                        "--log-level", "WARNING"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "MLJOBS_SIGNING_KEY": KEY})
        booster = work / "models" / "bench" / "1" / "model.lgb.txt"
        rows = numeric_table(args.rows, seed=2).drop_columns(["label"])
        pq.write_table(rows, work / "in.parquet")
        pacsv.write_csv(rows, work / "in.csv")
        del rows
        mlflow_python = None
        if not args.skip_mlflow:
            mlflow_python = cached_venv("mlflow", MLFLOW_PACKAGES)
            subprocess.run([str(mlflow_python), "-c", SAVE_MLFLOW_MODEL, str(booster), str(work / "mlflow-model")], check=True)

        results = {}
        for fmt in ("parquet", "csv"):
            source = work / f"in.{fmt}"
            commands = {
                "mljobs predict": mljobs_command(work, source, fmt),
                "mljobs, unsigned (LightGBM)": mljobs_command(work, source, fmt, signed=False),
                "naive pandas": [sys.executable, "-c", NAIVE_PANDAS, str(booster), str(source), str(work / f"naive.{fmt}")],
            }
            if mlflow_python and fmt == "csv":  # mlflow models predict reads CSV or JSON, not Parquet
                mlflow = str(mlflow_python.parent / "mlflow")
                commands["mlflow models predict"] = [mlflow, "models", "predict", "-m", str(work / "mlflow-model"),
                                                     "-i", str(source), "-t", "csv", "-o", str(work / "mlflow.json"),
                                                     "--env-manager", "local"]
            if fmt == "csv":  # our own Parquet runs again, in turn with the CSV runs: the two under the same load
                commands["mljobs predict, Parquet"] = mljobs_command(work, work / "in.parquet", "parquet")
                commands["unsigned (LightGBM), Parquet"] = mljobs_command(work, work / "in.parquet", "parquet", signed=False)
            results[fmt] = measure_interleaved(commands, args.repeat)

        print(f"\nbatch prediction, {args.rows:,} rows x 32 features (median of {args.repeat}; ratios within one input)")
        for fmt, measured in results.items():
            print(f"  {fmt} input:")
            base = measured["mljobs predict"]
            for name, m in measured.items():
                print(f"    {name:<28} {args.rows / m.seconds:>10,.0f} rows/s  {m.cpu_seconds:5.2f} CPU-s  {m.peak_rss_mb:5.0f} MB peak"
                      f"   mljobs speed x{m.seconds / base.seconds:.2f}, memory x{m.peak_rss_mb / base.peak_rss_mb:.2f}")
        on_csv, on_parquet_too = results["csv"]["mljobs predict"], results["csv"]["mljobs predict, Parquet"]
        print(f"  mljobs on CSV vs mljobs on Parquet, same rows: {on_parquet_too.seconds / on_csv.seconds:.2f}x the rows/s "
              f"(target: at least 0.6x); CPU {on_csv.cpu_seconds:.2f} s vs {on_parquet_too.cpu_seconds:.2f} s on {usable_cpus()} cores")
        unsigned = results["csv"]["unsigned (LightGBM), Parquet"].seconds / results["csv"]["mljobs, unsigned (LightGBM)"].seconds
        print(f"  the same with LightGBM's own predictor (unsigned store): {unsigned:.2f}x the rows/s")
        if "mlflow models predict" in results["csv"]:
            speedup = results["csv"]["mlflow models predict"].seconds / results["csv"]["mljobs predict"].seconds
            print(f"  mljobs vs mlflow models predict, both on CSV: {speedup:.1f}x the rows/s (target: at least 4x)")
            on_parquet = results["csv"]["mlflow models predict"].seconds / results["parquet"]["mljobs predict"].seconds
            print(f"  mljobs on Parquet vs mlflow models predict on the same rows as CSV (it cannot read Parquet): "
                  f"{on_parquet:.1f}x the rows/s")

        parsed = csv_parsers(work / "models", work / "in.csv", args.repeat)
        print(f"\n  CSV to featurized matrix, {args.rows:,} rows, in-process (median of {args.repeat}):")
        for name, seconds in parsed.items():
            print(f"    {name:<32} {seconds:6.2f} s  {args.rows / seconds:>10,.0f} rows/s")

        large = numeric_table(args.large_rows, seed=3).drop_columns(["label"])
        pq.write_table(large, work / "large.parquet", row_group_size=1_000_000)
        with pacsv.CSVWriter(work / "large.csv", large.schema) as writer:  # in slices: the CSV writer's buffer is the file
            for start in range(0, large.num_rows, 1_000_000):
                writer.write_table(large.slice(start, 1_000_000))
        del large
        for fmt in ("parquet", "csv"):
            small_rss = measure(mljobs_command(work, work / f"in.{fmt}", fmt)).peak_rss_mb
            large_rss = measure(mljobs_command(work, work / f"large.{fmt}", fmt)).peak_rss_mb
            print(f"  {fmt} peak RSS at {args.large_rows:,} rows: {large_rss:.0f} MB vs {small_rss:.0f} MB at {args.rows:,}: "
                  f"x{large_rss / small_rss:.2f} (target: at most x1.5)")
        print(json.dumps({fmt: {n: vars(m) for n, m in r.items()} for fmt, r in results.items()}))
        if not args.skip_containers:
            startup(work, args.before_ref, args.repeat)


if __name__ == "__main__":
    main()
