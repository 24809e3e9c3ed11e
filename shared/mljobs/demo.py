"""The embedded demo: a small, deterministic customer-churn dataset (numeric, categorical and
boolean columns, missing values, a binary target), so every job runs with no data of your own."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

MODEL = "demo"
TARGET = "churned"
ID_COLUMN = "customer_id"
PLANS = ("basic", "standard", "premium")
REGIONS = ("north", "south", "east", "west")


def _customers(rows: int, seed: int) -> tuple[dict[str, pa.Array], np.ndarray]:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    tenure = rng.integers(0, 72, rows)
    charges = np.round(rng.normal(65, 25, rows).clip(10, 150), 2)
    plan = rng.choice(PLANS, rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(REGIONS, rows).astype(object)
    support = rng.random(rows) < 0.4
    logit = 1.2 - 0.05 * tenure + 0.02 * (charges - 65) - 0.8 * support + 0.6 * (plan == "basic") - 0.01 * (age - 45)
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    # Missing values where real data has them.
    age[rng.random(rows) < 0.05] = np.nan
    charges[rng.random(rows) < 0.03] = np.nan
    region[rng.random(rows) < 0.04] = None
    columns = {
        ID_COLUMN: pa.array([f"c{seed:02d}-{i:06d}" for i in range(rows)]),
        "age": pa.array(age, mask=np.isnan(age)).cast(pa.int64()),
        "tenure_months": pa.array(tenure),
        "monthly_charges": pa.array(charges, mask=np.isnan(charges)),
        "plan": pa.array(plan),
        "region": pa.array(region.tolist(), pa.string()),
        "has_support": pa.array(support),
    }
    return columns, churned


def training_table(rows: int = 5000, seed: int = 7) -> pa.Table:
    columns, churned = _customers(rows, seed)
    return pa.table({**columns, TARGET: pa.array(np.where(churned, "yes", "no"))})


def scoring_table(rows: int = 1000, seed: int = 8) -> pa.Table:
    """New customers to score: the same columns, no target."""
    columns, _ = _customers(rows, seed)
    return pa.table(columns)


def scoring_csv() -> bytes:
    """scoring_table() as CSV: the bytes of the repo's data/input/new.csv, which the README's tour reads."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(scoring_table(), sink)
    return bytes(sink.getvalue().to_pybytes())


if __name__ == "__main__":  # python -m mljobs.demo data/input/new.csv: (re)write that file
    Path(sys.argv[1]).write_bytes(scoring_csv())
