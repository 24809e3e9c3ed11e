"""The store overview and the reports in a real browser: three versions trained in containers,
production promoted twice and rolled back, two batch jobs (one with rejects) and a SQL job, then
/ui from a real serve container and the reports (served, and written as files by the report job)
loaded in headless Chromium over the DevTools protocol (tests/integration/chromium.py).

What the browser checks: no console errors, no failed or 4xx loads and no CSP violation; every
image has a natural size; the versions table holds the three versions with the metrics `models
show` gives; the alias history shows both promotions and the rollback; the runs table shows the
rejects. The screenshots stay in the test's temp folder (their paths are printed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from mljobs import demo
from mljobs.launcher import cli
from tests.integration.chromium import Chromium

UID = 12345  # the user compose runs predict, sql and report as (MLJOBS_UID): not the image's 10001

TABLES = """(() => {
  const rows = id => Array.from(document.querySelectorAll('#' + id + ' tr')).map(r => Array.from(r.cells).map(c => c.textContent.trim()));
  return {versions: rows('versions-demo'), aliases: rows('aliases-demo'), runs: rows('runs'),
          charts: Array.from(document.querySelectorAll('svg')).map(s => s.getBBox().width),
          marks: Array.from(document.querySelectorAll('svg .alias-mark')).map(m => m.textContent)};
})()"""
IMAGES = "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight])"


def as_dicts(rows: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def ok(result: Any) -> Any:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def history(compose: Any) -> dict[str, dict[str, float]]:
    """The store and runs the test looks at; returns each version's metrics as `models show` says."""
    compose.env["MLJOBS_UID"] = compose.env["MLJOBS_GID"] = str(UID)
    for seed in ("1", "2", "3"):
        ok(compose.run("train", "--seed", seed))
    for move in (["promote", "demo", "2"], ["promote", "demo", "3"], ["rollback", "demo"]):
        ok(compose.run("models", *move))
    rows = demo.scoring_table(rows=200, seed=5)
    pacsv.write_csv(rows, compose.data_dir / "input" / "new.csv")
    columns = {name: rows.column(name).cast(pa.string()).to_pylist() for name in rows.column_names}
    columns["age"][7] = columns["age"][120] = "old"
    pacsv.write_csv(pa.table(columns), compose.data_dir / "input" / "bad.csv")
    ok(compose.run("predict", "--input", "/data/input/new.csv"))
    ok(compose.run("predict", "--input", "/data/input/bad.csv", "--keep-columns", "customer_id"))
    ok(compose.run("sql", "SELECT customer_id, predict_demo(t) AS churn FROM '/data/input/new.csv' t"))
    return {v: json.loads(ok(compose.run("models", "show", f"demo:{v}", "--json")).stdout)["metrics"] for v in ("1", "2", "3")}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    folder = tmp_path_factory.mktemp("chromium")
    chromium = Chromium(folder / "profile", folder / "chromium.log")
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def server(compose: Any, history: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One serve container as compose runs it, with the runs volume mounted read-only at /runs."""
    override = tmp_path_factory.mktemp("compose") / "runs-for-ui.yaml"
    override.write_text("services:\n  serve:\n    volumes:\n      - runs:/runs:ro\n")
    compose.files = ("compose.yaml", str(override))
    ok(compose("up", "-d", "serve"))
    compose.wait_ready()
    return compose


def test_the_overview_in_a_browser(server: Any, history: dict[str, dict[str, float]], browser: Chromium,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    loaded = browser.load(server.url("/ui"))
    shot = browser.screenshot(tmp_path_factory.mktemp("screenshots") / "ui.png")
    print(f"\nscreenshot of /ui: {shot}")
    assert loaded.errors == []
    page = browser.evaluate(TABLES)
    versions = as_dicts(page["versions"])
    assert [v["version"] for v in versions] == ["3", "2", "1"]
    for v in versions:
        assert {m: v[m] for m in history[v["version"]]} == {m: f"{x:.4f}" for m, x in history[v["version"]].items()}
    assert len(page["charts"]) == 1 and page["charts"][0] > 0 and sorted(page["marks"]) == ["latest", "production"]
    moves = [(a["alias"], a["what"], a["to version"], a["from version"]) for a in as_dicts(page["aliases"])]
    assert moves[:3] == [("production", "rolled back", "2", "3"), ("production", "promoted", "3", "2"),
                         ("production", "promoted", "2", "")]
    runs = as_dicts(page["runs"])
    assert [(r["job"], r["rows in"], r["rows out"], r["rejected"]) for r in runs if r["job"] == "predict"] == [
        ("predict", "200", "198", "2"), ("predict", "200", "200", "0")]
    assert [r["job"] for r in runs].count("sql") == 1 and [r["job"] for r in runs].count("train") == 3
    assert all(r["exit code"] == "0" and r["started by"] == "compose" for r in runs)


def test_a_served_report_and_version_page_in_a_browser(server: Any, browser: Chromium, tmp_path_factory: pytest.TempPathFactory) -> None:
    for path, least in (("/ui/models/demo/2/report.html", 4), ("/ui/models/demo/3/index.html", 4)):
        loaded = browser.load(server.url(path))
        print(f"\nscreenshot of {path}: {browser.screenshot(tmp_path_factory.mktemp('screenshots') / 'page.png')}")
        assert loaded.errors == []
        images = browser.evaluate(IMAGES)
        assert len(images) >= least and all(complete and width > 0 and height > 0 for _, complete, width, height in images), images
    comparison = browser.evaluate("Array.from(document.querySelectorAll('#comparison th')).map(c => c.textContent)")
    assert "production (version 2)" in comparison and "vs baseline" in comparison


def test_the_report_job_writes_files_you_own_that_open_offline(server: Any, browser: Chromium) -> None:
    reports = server.data_dir / "output" / "reports"
    single = ok(server.run("report", "demo@production")).stdout.strip().splitlines()[-1]
    assert single == "/data/output/reports/demo-2/index.html"
    overview = ok(server.run("report", "--all")).stdout.strip().splitlines()[-1]
    assert overview == "/data/output/reports/index.html"
    written = [p for p in reports.rglob("*") if p.is_file()]
    assert len(written) > 20 and {p.stat().st_uid for p in written} == {UID}
    for page in (reports / "index.html", reports / "demo-2" / "index.html", reports / "models" / "demo" / "1" / "report.html"):
        loaded = browser.load(page.as_uri())
        assert loaded.errors == [], page
        assert all(width > 0 for _, _, width, _ in browser.evaluate(IMAGES)), page
    refused = server.run("models", "report", "demo")  # the models service writes the store as 10001, not your folder
    assert refused.returncode == 2 and "docker compose run --rm report demo" in refused.stderr.strip().splitlines()[-1]


def test_the_launcher_writes_a_report_into_a_host_folder(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", server.project)  # the same volumes as compose's
    folder = tmp_path / "reports"
    folder.mkdir()
    folder.chmod(0o777)  # run as root, the launcher runs the job as the image's user (as it runs predict)
    assert cli.main(["models", "report", "demo:3", "--output", str(folder)]) == 0
    page = Path(capsys.readouterr().out.strip())
    assert page == folder / "demo-3" / "index.html" and (folder / "demo-3" / "report.html").is_file()
    if os.getuid() != 0:
        assert {p.stat().st_uid for p in folder.rglob("*")} == {os.getuid()}
