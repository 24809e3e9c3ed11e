"""The training job in real containers: classification and regression from files, the store
commands, and a training killed mid-way that must leave no version behind."""

from __future__ import annotations

import json
import subprocess
import time

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.datasets import multiclass_table, regression_table

pytestmark = pytest.mark.integration


def models_json(compose, *args):
    result = compose.run("models", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_multiclass_classification_from_csv(compose):
    pacsv.write_csv(multiclass_table(), compose.data_dir / "input" / "species.csv")
    result = compose.run("train", "--input", "/data/input/species.csv", "--target", "species", "--model", "species",
                         "--promote", "production")
    assert result.returncode == 0, result.stderr[-3000:]
    shown = models_json(compose, "show", "species")
    assert shown["version"] == "1" and shown["aliases"] == ["latest", "production"]
    assert shown["metrics"]["accuracy"] > 0.7
    assert {"report.html", "plot-confusion.png", "MANIFEST"} <= set(shown["files"])


def test_regression_from_a_folder_of_parquet_parts_with_a_sklearn_estimator(compose):
    folder = compose.data_dir / "input" / "houses"
    folder.mkdir()
    table = regression_table()
    pq.write_table(table.slice(0, 300), folder / "part-0.parquet")
    pq.write_table(table.slice(300), folder / "part-1.parquet")
    result = compose.run("train", "--input", "/data/input/houses", "--target", "price", "--model", "houses",
                         "--estimator", "sklearn.ensemble.RandomForestRegressor", "--params", '{"n_estimators": 30}')
    assert result.returncode == 0, result.stderr[-3000:]
    shown = models_json(compose, "show", "houses")
    assert shown["task"] == "regression" and shown["metrics"]["r2"] > 0.8
    assert "model.skops" in shown["files"] and "plot-residuals.png" in shown["files"]
    scored = compose.run("predict", "--model", "houses", "--input", "/data/input/houses/part-1.parquet")
    assert scored.returncode == 0, scored.stderr[-3000:]
    [part] = (compose.data_dir / "output").glob("model=houses/date=*/run=*/predictions.parquet")
    assert pq.read_table(part).num_rows == 300


def test_bad_training_input_exits_3_and_publishes_nothing(compose):
    (compose.data_dir / "input" / "one-class.csv").write_text("a,label\n1,x\n2,x\n3,x\n")
    result = compose.run("train", "--input", "/data/input/one-class.csv", "--target", "label", "--model", "oneclass")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "train failed: target column 'label' has 1 class(es); classification needs at least 2"
    )
    assert "oneclass" not in [m["name"] for m in models_json(compose, "list")]


def start_training(compose, model: str) -> str:
    started = compose("run", "-d", "train", "--model", model)
    assert started.returncode == 0, started.stderr
    return started.stdout.strip().splitlines()[-1]


def kill(container: str) -> None:
    subprocess.run(["docker", "kill", container], capture_output=True)
    subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def assert_every_visible_version_verifies(compose, model: str) -> list[str]:
    versions = next((m["versions"] for m in models_json(compose, "list") if m["name"] == model), [])
    for version in versions:
        assert compose.run("models", "show", f"{model}:{version}").returncode == 0, f"version {version} is incomplete"
    return versions


def test_training_killed_at_any_moment_leaves_no_partial_version(compose):
    """SIGKILL at moments spread over a whole run: what is visible afterwards always verifies."""
    start = time.monotonic()
    assert compose.run("train", "--model", "killed").returncode == 0
    full_run = time.monotonic() - start
    for fraction in (0.3, 0.6, 0.9):
        container = start_training(compose, "killed")
        time.sleep(full_run * fraction)
        kill(container)
        assert_every_visible_version_verifies(compose, "killed")


def test_training_killed_during_publish_leaves_no_version(compose):
    """Kill the moment the version's staging folder appears (files half written)."""
    container = start_training(compose, "midpublish")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listing = subprocess.run(["docker", "exec", container, "ls", "-a", "/models/midpublish"], capture_output=True, text=True)
        if ".staging-" in listing.stdout:
            break
        time.sleep(0.05)
    else:
        kill(container)
        pytest.fail("the training never started publishing")
    kill(container)
    assert assert_every_visible_version_verifies(compose, "midpublish") == []
    left = compose("run", "--rm", "-T", "--entrypoint", "ls", "models", "-a", "/models/midpublish").stdout.split()
    assert any(name.startswith(".staging-") for name in left), "the kill came after publish: nothing was tested"
