"""Benchmark helpers: a deterministic wide dataset, and timing that interleaves the contenders
so that machine noise hits them alike. Ratios are what to read, not absolute numbers."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def wide_table(rows: int, numeric: int = 30, seed: int = 0) -> pa.Table:
    """`numeric` float columns, two categoricals, a binary target `label`."""
    rng = np.random.default_rng(seed)
    columns = {f"x{i}": rng.normal(size=rows) for i in range(numeric)}
    columns["colour"] = pa.array(rng.choice(["red", "green", "blue", "amber"], rows))
    columns["size"] = pa.array(rng.choice([f"s{i}" for i in range(12)], rows))
    logit = columns["x0"] - 0.5 * columns["x1"] + 0.3 * columns["x2"] * columns["x3"]
    columns["label"] = pa.array((rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64))
    return pa.table(columns)


def numeric_table(rows: int, seed: int) -> pa.Table:
    """The wide table with its two categoricals as small integer codes: a shape all three
    contenders (MLflow's pyfunc included) accept as it is."""
    table = wide_table(rows, seed=seed)
    for name in ("colour", "size"):
        codes = pc.index_in(table.column(name), value_set=pc.unique(table.column(name)))
        table = table.set_column(table.schema.get_field_index(name), name, codes.cast(pa.int64()))
    return table


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


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float = 0.0  # user + system, over all the command's threads


# The MLflow that the benchmarks and the protocol tests compare with, in its own environment.
MLFLOW_PACKAGES = ["mlflow==3.17.2", "lightgbm==4.7.0"]

# A fresh wrapper per run, so RUSAGE_CHILDREN is the peak of that one child and no other.
_PEAK_WRAPPER = (
    "import resource, subprocess, sys, time;"
    "t = time.perf_counter(); code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode;"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
    "print(time.perf_counter() - t, u.ru_maxrss / 1024, u.ru_utime + u.ru_stime);"
    "sys.exit(code)"
)


def measure(command: list[str], env: dict[str, str] | None = None) -> Measured:
    """Wall time, peak resident memory and CPU time of one command run to completion."""
    result = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *command], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{result.stderr[-2000:]}")
    seconds, rss, cpu = result.stdout.split()[-3:]
    return Measured(float(seconds), float(rss), float(cpu))


def measure_interleaved(commands: dict[str, list[str]], repeat: int) -> dict[str, Measured]:
    """Median time, peak RSS and CPU time of each command, run in turn `repeat` times."""
    runs: dict[str, list[Measured]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            runs[name].append(measure(command))
    return {
        name: Measured(statistics.median(m.seconds for m in ms), statistics.median(m.peak_rss_mb for m in ms),
                       statistics.median(m.cpu_seconds for m in ms))
        for name, ms in runs.items()
    }


def cached_venv(name: str, packages: list[str]) -> Path:
    """A virtual environment outside the repo for a tool we do not ship (MLflow, Airflow), made
    once and reused while its package list stays the same; returns its python."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mljobs-venvs" / name
    python, done = root / "bin" / "python", root / ".installed"
    if not done.exists() or done.read_text() != " ".join(packages):
        print(f"creating {root} with {' '.join(packages)} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True, capture_output=True)
        done.write_text(" ".join(packages))
    return python
