"""`models list|show|promote|rollback` against a real store folder."""

import json
import shutil

from mljobs.jobs import models, train


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
