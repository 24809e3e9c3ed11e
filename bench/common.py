"""Benchmark helpers: a deterministic wide dataset, and timing that interleaves the contenders
so that machine noise hits them alike. Ratios are what to read, not absolute numbers."""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import numpy as np
import pyarrow as pa


def wide_table(rows: int, numeric: int = 30, seed: int = 0) -> pa.Table:
    """`numeric` float columns, two categoricals, a binary target `label`."""
    rng = np.random.default_rng(seed)
    columns = {f"x{i}": rng.normal(size=rows) for i in range(numeric)}
    columns["colour"] = pa.array(rng.choice(["red", "green", "blue", "amber"], rows))
    columns["size"] = pa.array(rng.choice([f"s{i}" for i in range(12)], rows))
    logit = columns["x0"] - 0.5 * columns["x1"] + 0.3 * columns["x2"] * columns["x3"]
    columns["label"] = pa.array((rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64))
    return pa.table(columns)


def interleaved(contenders: dict[str, Callable[[], None]], repeat: int) -> dict[str, float]:
    """Median wall seconds of each contender, run in turn `repeat` times."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def print_ratios(title: str, medians: dict[str, float], baseline: str) -> None:
    print(f"\n{title} (median seconds; ratio to {baseline}; {os.cpu_count()} cores)")
    for name, seconds in medians.items():
        print(f"  {name:<28} {seconds:8.2f} s   x{seconds / medians[baseline]:.3f}")
