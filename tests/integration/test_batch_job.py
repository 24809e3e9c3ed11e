"""The batch job in real containers: values against an in-process prediction, rejects, reruns,
SIGKILL and SIGTERM mid-run, bounded memory, run records."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mljobs.predictor import load_predictor
from mljobs.store import ModelStore
from tests.fault_table import record

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from common import wide_table  # noqa: E402

pytestmark = pytest.mark.integration
LARGE_ROWS = 2_000_000


@pytest.fixture(scope="module")
def wide_model(compose) -> Path:
    """Model `wide` trained in a container, and a copy of the store on the host to compare with."""
    pq.write_table(wide_table(20_000, seed=1), compose.data_dir / "input" / "wide-train.parquet")
    trained = compose.run("train", "--input", "/data/input/wide-train.parquet", "--target", "label", "--model", "wide")
    assert trained.returncode == 0, trained.stderr[-3000:]
    return compose.copy_store("wide", compose.data_dir / "store-copy")


def runs_of(compose, model: str) -> list[Path]:
    return sorted(p.parent for p in (compose.data_dir / "output").glob(f"model={model}/date=*/run=*/_SUCCESS"))


def staging_left(compose) -> list[Path]:
    return list((compose.data_dir / "output").glob(".staging-*"))


def run_records(compose) -> list[dict]:
    """Every run record on the `runs` volume, oldest first."""
    listing = compose.run("models", "runs")
    assert listing.returncode == 0, listing.stderr
    return json.loads(listing.stdout)


def test_container_predictions_equal_an_in_process_prediction(compose, wide_model):
    rows = wide_table(5_000, seed=3).drop_columns(["label"])
    pacsv.write_csv(rows, compose.data_dir / "input" / "wide-5k.csv")
    result = compose.run("predict", "--model", "wide", "--input", "/data/input/wide-5k.csv", "--proba", "--chunk-rows", "1000")
    assert result.returncode == 0, result.stderr[-3000:]
    [folder] = runs_of(compose, "wide")
    scored = pq.read_table(folder / "predictions.parquet")
    assert scored.num_rows == 5_000
    predictor = load_predictor(ModelStore(wide_model), "wide")
    expected = predictor.predict_raw(predictor.featurizer.transform_table(rows).matrix)
    assert scored.column("proba_1").to_pylist() == expected[:, 1].tolist()
    records = [r for r in run_records(compose) if r["input"] == "/data/input/wide-5k.csv"]
    assert records[-1]["status"] == "succeeded" and records[-1]["rows"] == {"in": 5000, "out": 5000, "rejected": 0}
    assert records[-1]["model"] == {"name": "wide", "version": "1"}

    rerun = compose.run("predict", "--model", "wide", "--input", "/data/input/wide-5k.csv", "--proba", "--chunk-rows", "1000")
    assert rerun.returncode == 0 and "already scored" in rerun.stderr
    assert runs_of(compose, "wide") == [folder]


def test_bad_rows_yield_the_right_rejects_and_a_failure_is_recorded(compose, wide_model):
    rows = wide_table(100, seed=4).drop_columns(["label"])
    columns = {name: rows.column(name).cast(pa.string()).to_pylist() for name in rows.column_names}
    columns["x5"][17] = "unknown"
    columns["x9"][60] = "1,5"
    pacsv.write_csv(pa.table(columns), compose.data_dir / "input" / "wide-bad.csv")
    result = compose.run("predict", "--model", "wide", "--input", "/data/input/wide-bad.csv")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = next(f for f in runs_of(compose, "wide") if (f / "rejects.parquet").exists())
    rejects = pq.read_table(folder / "rejects.parquet").to_pylist()
    assert [(r["row"], r["reason"]) for r in rejects] == [
        (17, "x5: expected a number, got 'unknown'"), (60, "x9: expected a number, got '1,5'")
    ]
    assert pq.read_table(folder / "predictions.parquet").num_rows == 98

    strict = compose.run("predict", "--model", "wide", "--input", "/data/input/wide-bad.csv", "--strict")
    assert strict.returncode == 3
    failed = [r for r in run_records(compose) if r["status"] == "failed"]
    assert failed[-1]["reason"] == "row 17, column 'x5': expected a number, got 'unknown' (and 1 more)"
    assert failed[-1]["exit_code"] == 3


@pytest.fixture(scope="module")
def large_input(compose) -> str:
    pq.write_table(wide_table(LARGE_ROWS, seed=5).drop_columns(["label"]), compose.data_dir / "input" / "wide-large.parquet")
    return "/data/input/wide-large.parquet"


def test_memory_stays_bounded_under_a_small_limit(compose, wide_model, large_input):
    # The input alone would take over 500 MB as floats; the container may use 450 MB in all.
    compose.env["MLJOBS_PREDICT_MEMORY"] = "450m"
    try:
        result = compose.run("predict", "--model", "wide", "--input", large_input, "--chunk-rows", "20000", "--force")
    finally:
        del compose.env["MLJOBS_PREDICT_MEMORY"]
    assert result.returncode == 0, result.stderr[-3000:]
    newest = max(runs_of(compose, "wide"), key=lambda f: f.stat().st_mtime)
    assert pq.ParquetFile(newest / "predictions.parquet").metadata.num_rows == LARGE_ROWS


def start_predict(compose, input_path: str, *args: str) -> str:
    started = compose("run", "-d", "predict", "--model", "wide", "--input", input_path, "--force", *args)
    assert started.returncode == 0, started.stderr
    return started.stdout.strip().splitlines()[-1]


def rows_scored(container: str) -> int:
    """The last progress line of a running predict job: 'scored N rows (M rejected)'."""
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True).stderr
    progress = re.findall(r"scored (\d+) rows", logs)
    return int(progress[-1]) if progress else 0


def kill_at(compose, large_input: str, fraction: float) -> bool:
    """Start a job and SIGKILL it once it has scored `fraction` of its rows; True if the kill
    landed on the running job there (docker kill fails on a job that has already ended)."""
    container = start_predict(compose, large_input, "--chunk-rows", "50000")
    deadline = time.monotonic() + 120
    while (scored := rows_scored(container)) < fraction * LARGE_ROWS and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = subprocess.run(["docker", "kill", container], capture_output=True).returncode == 0
    subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    return killed and fraction * LARGE_ROWS <= scored < LARGE_ROWS


def test_sigkill_at_10_50_90_percent_leaves_no_output_or_a_complete_one(compose, wide_model, large_input):
    before = set(runs_of(compose, "wide"))
    for fraction in (0.1, 0.5, 0.9):
        # A busy machine may let the job finish between two looks: try again, up to three times.
        assert any(kill_at(compose, large_input, fraction) for _ in range(3)), f"never caught the job running at {fraction:.0%}"
    # Readers look at run folders: each one there must be complete, killed runs leave none.
    visible = list((compose.data_dir / "output").glob("model=*/date=*/run=*"))
    partial = [f for f in visible if not (f / "_SUCCESS").exists()]
    for folder in set(runs_of(compose, "wide")) - before:  # a run that finished before its kill
        summary = json.loads((folder / "_SUCCESS").read_text())
        if pq.ParquetFile(folder / "predictions.parquet").metadata.num_rows != summary["rows"]["out"] or summary["rows"]["out"] != LARGE_ROWS:
            partial.append(folder)
    record("batch job SIGKILLed at 10% / 50% / 90% of its rows", 3, "runs", "partial outputs", len(partial))
    assert partial == []


def test_sigterm_mid_run_stops_within_seconds_and_leaves_nothing(compose, wide_model, large_input):
    before = set(runs_of(compose, "wide"))
    staging_before = set(staging_left(compose))
    container = start_predict(compose, large_input)
    time.sleep(3)
    start = time.monotonic()
    subprocess.run(["docker", "stop", "--time", "20", container], capture_output=True, check=True)
    stopped_in = time.monotonic() - start
    state = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True).stdout)[0]["State"]
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True).stderr
    subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    assert stopped_in < 5, f"docker stop took {stopped_in:.1f} s"
    assert state["ExitCode"] == 1
    assert logs.strip().splitlines()[-1] == "predict failed: stopped by signal SIGTERM"
    assert set(runs_of(compose, "wide")) == before and set(staging_left(compose)) == staging_before
    stopped = [r for r in run_records(compose) if r.get("reason") == "stopped by signal SIGTERM"]
    assert stopped and stopped[-1]["status"] == "failed"
