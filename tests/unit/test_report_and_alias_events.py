"""The richer training report (a baseline on the held-out rows, gain and split count, calibration)
and the alias events the store records for the overview, in a folder and in S3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mljobs.report import baseline
from mljobs.report_plots import calibration_points
from mljobs.schema import CLASSIFICATION, REGRESSION, FeatureSchema
from mljobs.store import ModelStore
from tests import s3

s3_server, s3_env = s3.s3_server, s3.s3_env


def test_the_report_scores_a_baseline_and_keeps_gain_and_split_count(demo_store: Path) -> None:
    folder = demo_store / "models" / "demo" / "1"
    data = json.loads((folder / "report.json").read_text())
    assert data["baseline"]["kind"] == "majority class" and data["baseline"]["predicts"] == "no"
    assert data["baseline"]["metrics"]["roc_auc"] == 0.5
    importance = data["importance"]
    assert len(importance["gain"]) == len(importance["split"]) == len(importance["features"]) == 6
    assert all(float(s).is_integer() for s in importance["split"]) and sum(importance["split"]) > 0
    page = (folder / "report.html").read_text()
    assert '<img src="plot-calibration.png"' in page and "model − baseline" in page


def test_the_baseline_is_the_majority_class_or_the_mean_of_the_held_out_rows() -> None:
    classes = FeatureSchema((), "y", CLASSIFICATION, ("a", "b", "c"))
    found = baseline(classes, np.array([2, 2, 1, 0, 2.0]))
    assert found["predicts"] == "c" and found["metrics"]["accuracy"] == 0.6
    values = FeatureSchema((), "y", REGRESSION)
    found = baseline(values, np.array([1.0, 2.0, 3.0, 6.0]))
    assert found["predicts"] == "3" and found["metrics"]["mae"] == 1.5 and found["metrics"]["r2"] == 0.0


def test_calibration_bins_compare_predicted_with_observed() -> None:
    raw = np.array([[0.95, 0.05], [0.9, 0.1], [0.15, 0.85], [0.1, 0.9]])
    predicted, rate, counts = calibration_points(np.array([0, 1, 1, 1]), raw)
    assert list(counts) == [1, 1, 1, 1]
    assert list(rate) == [0.0, 1.0, 1.0, 1.0] and np.allclose(predicted, [0.05, 0.1, 0.85, 0.9])


def moves(store: ModelStore) -> list[tuple[str | None, ...]]:
    return [(e["alias"], e["action"], e["version"], e["previous"]) for e in store.alias_events("m")]


def publish_and_move(store: ModelStore) -> None:
    for text in "abc":
        store.publish("m", lambda folder, text=text: (folder / "model.txt").write_text(text))  # type: ignore[misc]
    store.promote("m", "1", "production")
    store.promote("m", "3", "production")
    store.rollback("m", "production")
    store.set_alias("m", "staging", "2")


EXPECTED = [("latest", "published", "1", None), ("latest", "published", "2", "1"), ("latest", "published", "3", "2"),
            ("production", "promoted", "1", None), ("production", "promoted", "3", "1"),
            ("production", "rolled back", "1", "3"), ("staging", "set", "2", None)]


def test_every_alias_move_is_recorded_with_its_time(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish_and_move(store)
    assert moves(store) == EXPECTED
    assert all(e["time"] and str(e["time"]).endswith("+00:00") for e in store.alias_events("m"))
    assert store.aliases("m") == {"latest": "3", "production": "1", "staging": "2"}  # the event files are no aliases


def test_alias_moves_are_recorded_in_s3_too(s3_env: s3.S3Env) -> None:
    store = ModelStore(s3_env.url("events"))
    publish_and_move(store)
    assert moves(store) == EXPECTED
