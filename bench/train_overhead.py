"""Training job overhead: `train` (schema, featurizer, metrics, report, publish) against a bare
script doing the same learning (read Parquet, 80/20 split, lightgbm.train, held-out AUC).

    .venv/bin/python bench/train_overhead.py [--rows 1000000] [--repeat 3]

Target (issue 3): job time at most 1.10 x the bare script.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, print_ratios, wide_table  # noqa: E402

PARAMS = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20, "verbose": -1, "seed": 42}
ROUNDS = 200


def bare_script(path: Path) -> None:
    frame = pd.read_parquet(path)
    for column in ("colour", "size"):
        frame[column] = frame[column].astype("category")
    order = np.random.default_rng(42).permutation(len(frame))
    n_valid = len(frame) // 5
    valid, train = frame.iloc[np.sort(order[:n_valid])], frame.iloc[np.sort(order[n_valid:])]
    features = [c for c in frame.columns if c != "label"]
    booster = lightgbm.train(PARAMS, lightgbm.Dataset(train[features], label=train["label"]), num_boost_round=ROUNDS)
    roc_auc_score(valid["label"], booster.predict(valid[features]))


def bare_process(path: Path) -> None:
    """The bare script in its own process, so both contenders pay for starting Python and imports."""
    subprocess.run([sys.executable, __file__, "--bare", str(path)], check=True)


def job(path: Path, store: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "mljobs.jobs.train", "--input", str(path), "--target", "label", "--model", "bench",
         "--models-dir", str(store / "models"), "--runs-dir", str(store / "runs"), "--log-level", "WARNING"],
        check=True, stdout=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        return bare_script(args.bare)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.parquet"
        pq.write_table(wide_table(args.rows), path)
        medians = interleaved(
            {"bare lightgbm script": lambda: bare_process(path), "mljobs train job": lambda: job(path, Path(tmp))},
            args.repeat,
        )
    print_ratios(f"training, {args.rows:,} rows x 32 features, {ROUNDS} rounds", medians, "bare lightgbm script")
    overhead = medians["mljobs train job"] / medians["bare lightgbm script"]
    print(f"  job overhead: {overhead - 1:+.1%} (target: at most +10%)")


if __name__ == "__main__":
    main()
