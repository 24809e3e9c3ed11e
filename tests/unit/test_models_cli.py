"""`models list|show|promote|rollback|runs` against a real store folder and run-record folder."""

import json
import shutil

import pytest

from mljobs.jobs import models, train
from mljobs.runs import RunLog


@pytest.fixture(autouse=True)
def own_runs_dir(tmp_path, monkeypatch):
    """Run records go to this test's folder unless a test names another (never to /runs)."""
    monkeypatch.setenv("MLJOBS_RUNS_DIR", str(tmp_path / "own-runs"))
    monkeypatch.delenv("MLJOBS_MODELS_DIR", raising=False)
    return tmp_path / "own-runs"


def test_promote_then_rollback_moves_the_alias_back(tmp_path, capsys):
    root = str(tmp_path / "models")
    for seed in ("1", "2"):
        assert train.main(["--models-dir", root, "--runs-dir", str(tmp_path / "runs"), "--seed", seed]) == 0
    assert models.main(["--models-dir", root, "promote", "demo", "1"]) == 0
    assert models.main(["--models-dir", root, "promote", "demo", "2"]) == 0
    assert models.main(["--models-dir", root, "rollback", "demo"]) == 0
    capsys.readouterr()
    assert models.main(["--models-dir", root, "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "demo", "versions": ["1", "2"], "aliases": {"latest": "2", "production": "1"}}
    ]
    assert models.main(["--models-dir", root, "rollback", "demo"]) == 4
    assert "no earlier version" in capsys.readouterr().err


def test_store_commands_leave_a_run_record(demo_store, tmp_path, capsys):
    root = tmp_path / "models"
    shutil.copytree(demo_store / "models", root)
    runs = tmp_path / "runs"
    assert models.main(["--models-dir", str(root), "--runs-dir", str(runs), "promote", "demo", "1"]) == 0
    assert capsys.readouterr().out == "demo@production -> 1\n"  # stdout holds the answer only
    [record] = RunLog(runs).records()
    assert record["job"] == "models" and record["status"] == "succeeded" and record["exit_code"] == 0
    assert record["model"] == {"name": "demo", "version": "1"} and record["output"] == "demo@production -> 1"


def test_an_io_error_is_one_line_with_a_failed_record(demo_store, tmp_path, capsys):
    root = tmp_path / "models"
    shutil.copytree(demo_store / "models", root)
    shutil.rmtree(root / "demo" / "aliases")
    (root / "demo" / "aliases").write_text("a file where the alias folder should be")
    runs = tmp_path / "runs"
    assert models.main(["--models-dir", str(root), "--runs-dir", str(runs), "promote", "demo", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("models failed: input/output error")
    [record] = RunLog(runs).records()
    assert record["job"] == "models" and record["status"] == "failed" and "input/output error" in record["reason"]


def test_looking_at_the_store_leaves_no_run_record(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert train.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(runs)]) == 0
    assert models.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(runs), "list"]) == 0
    assert models.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(runs), "show", "demo"]) == 0
    capsys.readouterr()
    assert models.main(["--runs-dir", str(runs), "runs"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["job"] for r in listed] == ["train"] and len(RunLog(runs).records()) == 1


def test_runs_takes_no_ignored_json_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        models.main(["--runs-dir", str(tmp_path / "runs"), "runs", "--json"])
    assert stopped.value.code == 2 and "unrecognized arguments: --json" in capsys.readouterr().err


def test_show_verifies_and_reports_metrics(demo_store, capsys):
    assert models.main(["--models-dir", str(demo_store / "models"), "show", "demo@latest", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "1" and "latest" in shown["aliases"] and "roc_auc" in shown["metrics"]


def test_promoting_a_tampered_version_is_refused(demo_store, tmp_path, capsys):
    root = tmp_path / "models"
    shutil.copytree(demo_store / "models", root)
    (root / "demo" / "1" / "extra.pkl").write_bytes(b"\x80\x04")
    assert models.main(["--models-dir", str(root), "promote", "demo", "1"]) == 4
    assert "file 'extra.pkl' is not in its MANIFEST" in capsys.readouterr().err
    assert not (root / "demo" / "aliases" / "production").exists()


def test_promoting_a_missing_version_names_the_ones_that_exist(demo_store, capsys):
    assert models.main(["--models-dir", str(demo_store / "models"), "promote", "demo", "9"]) == 4
    assert "has no version 9 (versions: 1)" in capsys.readouterr().err


def test_the_gate_promotes_only_a_version_at_least_as_good(tmp_path, capsys):
    import pyarrow.csv as pacsv

    from mljobs import demo

    root, runs = str(tmp_path / "models"), str(tmp_path / "runs")
    good, poor = tmp_path / "good.csv", tmp_path / "poor.csv"
    pacsv.write_csv(demo.training_table(rows=3000), good)
    pacsv.write_csv(demo.training_table(rows=3000).select(["plan", "churned"]), poor)  # one weak feature
    flags = ["--models-dir", root, "--runs-dir", runs, "--target", "churned", "--model", "churn"]
    assert train.main([*flags, "--input", str(good), "--drop", "customer_id"]) == 0
    assert models.main(["--models-dir", root, "promote-if-better", "churn"]) == 0  # no production yet: promote
    assert train.main([*flags, "--input", str(poor)]) == 0
    capsys.readouterr()
    assert models.main(["--models-dir", root, "promote-if-better", "churn"]) == 0
    assert "kept churn@production at version 1: version 2 has roc_auc" in capsys.readouterr().out
    assert models.main(["--models-dir", root, "promote-if-better", "churn", "--no-gate"]) == 0
    assert models.ModelStore(root).aliases("churn")["production"] == "2"
