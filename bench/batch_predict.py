"""Batch prediction throughput and memory: the mljobs predict job against (i) a naive pandas
script (read everything, predict, write) and (ii) `mlflow models predict`, all scoring the same
LightGBM booster on the same 1M rows, run in turn; then mljobs' peak memory at 10M vs 1M rows.
mljobs runs twice: in a signed store (its compiled predictor) and without the key (LightGBM).

    .venv/bin/python bench/batch_predict.py [--rows 1000000] [--large-rows 10000000] [--repeat 3]

Targets (issue 4): at least 5x the rows/s of `mlflow models predict`; peak RSS at 10M rows
within 1.5x of 1M. MLflow is installed once into a cache folder outside the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from common import MLFLOW_PACKAGES, cached_venv, measure, measure_interleaved, numeric_table  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-mlflow", action="store_true")
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
            results[fmt] = measure_interleaved(commands, args.repeat)

        print(f"\nbatch prediction, {args.rows:,} rows x 32 features (median of {args.repeat}; ratios within one input)")
        for fmt, measured in results.items():
            print(f"  {fmt} input:")
            base = measured["mljobs predict"]
            for name, m in measured.items():
                print(f"    {name:<24} {args.rows / m.seconds:>10,.0f} rows/s  {m.peak_rss_mb:7.0f} MB peak"
                      f"   mljobs speed x{m.seconds / base.seconds:.2f}, memory x{m.peak_rss_mb / base.peak_rss_mb:.2f}")
        if "mlflow models predict" in results["csv"]:
            speedup = results["csv"]["mlflow models predict"].seconds / results["csv"]["mljobs predict"].seconds
            print(f"  mljobs vs mlflow models predict, both on CSV: {speedup:.1f}x the rows/s (target: at least 5x)")
            on_parquet = results["csv"]["mlflow models predict"].seconds / results["parquet"]["mljobs predict"].seconds
            print(f"  mljobs on Parquet vs mlflow models predict on the same rows as CSV (it cannot read Parquet): "
                  f"{on_parquet:.1f}x the rows/s")

        large = numeric_table(args.large_rows, seed=3).drop_columns(["label"])
        pq.write_table(large, work / "large.parquet", row_group_size=1_000_000)
        del large
        small_rss = measure(mljobs_command(work, work / "in.parquet", "parquet")).peak_rss_mb
        large_rss = measure(mljobs_command(work, work / "large.parquet", "parquet")).peak_rss_mb
        print(f"  peak RSS at {args.large_rows:,} rows: {large_rss:.0f} MB vs {small_rss:.0f} MB at {args.rows:,}: "
              f"x{large_rss / small_rss:.2f} (target: at most x1.5)")
        print(json.dumps({fmt: {n: vars(m) for n, m in r.items()} for fmt, r in results.items()}))


if __name__ == "__main__":
    main()
