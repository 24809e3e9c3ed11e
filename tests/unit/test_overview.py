"""The store overview and the reports, in-process: what the pages show (versions, metrics, alias
history, runs, unverified versions), that they escape what users wrote, that the static files'
links resolve, and what the server answers at /ui."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from mljobs.jobs import models, train
from mljobs.overview.chart import metric_chart
from mljobs.overview.collect import VersionCache, collect
from mljobs.overview.html_parts import SERVER_LINKS
from mljobs.overview.page import overview_page
from mljobs.overview.recent_runs import RecentRuns
from mljobs.serve.app import create_app
from mljobs.store import ModelStore

EVIL = '<script>alert("x")</script>'


class Cells(HTMLParser):
    """Every table's rows as lists of cell texts, by table id; and every href and src."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.scripts = 0
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "table":
            self._table = found.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        for name in ("href", "src"):
            if found.get(name):
                self.links.append(str(found[name]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Cells:
    cells = Cells()
    cells.feed(html)
    return cells


def as_dicts(rows: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(rows[0], row)) for row in rows[1:]]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo:1-3 (seeds 1-3), production promoted to 2, then 3, rolled back to 2; a predict run with
    rejects and a failed run whose reason is markup, beside the real records."""
    root = tmp_path_factory.mktemp("overview")
    flags = ["--models-dir", str(root / "models"), "--runs-dir", str(root / "runs")]
    for seed in ("1", "2", "3"):
        assert train.main([*flags, "--seed", seed]) == 0
    for move in (["promote", "demo", "2"], ["promote", "demo", "3"], ["rollback", "demo"]):
        assert models.main([*flags, *move]) == 0
    for run_id, record in (("20990101T000000Z-aaaaaa", {"job": "predict", "status": "succeeded", "exit_code": 0,
                                                         "rows": {"in": 300, "out": 297, "rejected": 3}, "started_by": "airflow"}),
                           ("20990101T000001Z-bbbbbb", {"job": "sql", "status": "failed", "exit_code": 3, "reason": EVIL,
                                                         "started_by": 'cron "nightly"'})):
        (root / "runs" / f"{run_id}.json").write_text(json.dumps({"run_id": run_id, "started": "2099-01-01T00:00:00+00:00", **record}))
    return root


def metrics_of(root: Path, version: str) -> dict[str, float]:
    return json.loads((root / "models" / "demo" / version / "metadata.json").read_text())["metrics"]


def page_of(root: Path) -> str:
    store = ModelStore(root / "models")
    return overview_page(collect(store, VersionCache(store), RecentRuns(root / "runs")), SERVER_LINKS)


def test_the_overview_shows_every_version_with_its_metrics_and_the_alias_history(store: Path) -> None:
    page = parse(page_of(store))
    versions = as_dicts(page.tables["versions-demo"])
    assert [v["version"] for v in versions] == ["3", "2", "1"]
    for v in versions:
        assert v["accuracy"] == f"{metrics_of(store, v['version'])['accuracy']:.4f}"
        assert v["checked"] == "files (MANIFEST)" and v["estimator"] == "lightgbm"
    assert versions[1]["aliases"] == "production" and versions[0]["aliases"] == "latest"
    delta = metrics_of(store, "3")["roc_auc"] - metrics_of(store, "2")["roc_auc"]
    assert versions[0]["roc_auc vs production"] == f"{delta:+.4f}"
    history = [(e["alias"], e["what"], e["to version"], e["from version"]) for e in as_dicts(page.tables["aliases-demo"])]
    assert history[:3] == [("production", "rolled back", "2", "3"), ("production", "promoted", "3", "2"),
                           ("production", "promoted", "2", "")]
    assert page.scripts == 0


def test_the_runs_table_shows_rejects_and_escapes_what_users_wrote(store: Path) -> None:
    html = page_of(store)
    runs = as_dicts(parse(html).tables["runs"])
    assert runs[0]["job"] == "sql" and runs[0]["reason"] == EVIL and runs[0]["exit code"] == "3"
    assert runs[0]["started by"] == 'cron "nightly"'
    assert (runs[1]["rows in"], runs[1]["rows out"], runs[1]["rejected"]) == ("300", "297", "3")
    assert {r["job"] for r in runs} >= {"train", "models", "predict", "sql"}
    assert EVIL not in html and "&lt;script&gt;" in html


def test_an_unverified_version_is_marked_not_hidden(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    (copy / "models" / "demo" / "1" / "model.lgb.txt").write_text("tampered")
    html = page_of(copy)
    versions = as_dicts(parse(html).tables["versions-demo"])
    assert [v["version"] for v in versions] == ["3", "2", "1"]
    assert versions[2]["checked"].startswith("UNVERIFIED: model demo:1 is refused: file 'model.lgb.txt' does not match")
    assert versions[2]["accuracy"] == f"{metrics_of(store, '1')['accuracy']:.4f}"  # shown as found, marked
    assert 'class="unverified"' in html and "failed verification" in html


def test_the_chart_marks_aliases_and_escapes_its_labels() -> None:
    svg = metric_chart("a<b", [("1", 0.5, True), ("2", 0.7, False), ("3", None, True)], {"production": "2", "x&y": "1"})
    assert svg.startswith("<svg") and "a&lt;b" in svg and "x&amp;y" in svg and "<b" not in svg.replace("<svg", "")
    assert svg.count("<circle") == 2 and "(UNVERIFIED)" in svg and ">production</text>" in svg


def test_a_page_without_models_or_runs_says_so(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    html = overview_page(collect(store, VersionCache(store), RecentRuns(tmp_path / "nowhere")), SERVER_LINKS)
    assert 'id="no-models"' in html and 'id="runs-missing"' in html


def test_recent_runs_parses_only_the_newest_and_sees_a_record_change(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"2026010{i // 10}T0000{i % 10:02d}Z-000000.json").write_text(json.dumps({"run_id": str(i), "status": "running"}))
    (tmp_path / "20260102T000009Z-000000.json").write_text("{not json")
    runs = RecentRuns(tmp_path, limit=5)
    assert [r["run_id"] for r in runs.records()] == ["28", "27", "26", "25"]  # the broken newest one is skipped
    (tmp_path / "20260102T000008Z-000000.json").write_text(json.dumps({"run_id": "28", "status": "succeeded", "pad": "x"}))
    assert runs.records()[0]["status"] == "succeeded"


# --- static files -----------------------------------------------------------------------------

def test_models_report_writes_a_version_and_the_whole_store_as_linked_files(store: Path, tmp_path: Path, capsys: Any) -> None:
    flags = ["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs")]
    assert models.main([*flags, "report", "demo@production", "--output", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "demo-2" / "index.html")
    assert {"index.html", "report.html", "plot-roc.png", "plot-calibration.png", "plot-importance.png"} <= {
        p.name for p in (tmp_path / "demo-2").iterdir()}
    assert models.main([*flags, "report", "--all", "--output", str(tmp_path / "all")]) == 0
    pages = [tmp_path / "all" / "index.html", *sorted((tmp_path / "all" / "models").rglob("*.html"))]
    assert len(pages) == 1 + 3 * 2
    for page in pages + [tmp_path / "demo-2" / "index.html"]:
        for link in [x for x in parse(page.read_text()).links if not x.startswith("data:")]:  # inline, the favicon
            target = link.split("#")[0]
            assert not re.match(r"^[a-z]+:", link) and not link.startswith("/"), f"{page}: {link} is not relative"
            assert not target or (page.parent / target).is_file(), f"{page}: {link} leads nowhere"


@pytest.mark.parametrize("argv, code, message", [
    (["report"], 2, "say which report"),
    (["report", "demo", "--all"], 2, "say which report"),
    (["report", "nope"], 4, "model 'nope' does not exist"),
])
def test_models_report_says_what_is_wrong(store: Path, tmp_path: Path, capsys: Any, argv: list[str], code: int, message: str) -> None:
    flags = ["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs")]
    assert models.main([*flags, *argv, "--output", str(tmp_path)]) == code
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_models_report_cannot_write_its_folder_exits_2(store: Path, tmp_path: Path, capsys: Any) -> None:
    locked = tmp_path / "locked"
    locked.write_text("a file, not a folder")
    flags = ["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs")]
    assert models.main([*flags, "report", "demo", "--output", str(locked)]) == 2
    assert "docker compose run --rm report demo" in capsys.readouterr().err


# --- the server ---------------------------------------------------------------------------------

@pytest.fixture
def client(store: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MLJOBS_RUNS_DIR", str(store / "runs"))
    app = create_app({"MODELS_DIR": str(store / "models"), "MODEL": "demo", "POLL_SECONDS": "3600"})
    yield app.test_client()
    app.extensions["mljobs.holder"].stop()


def test_ui_serves_the_overview_and_the_versions_pages_and_plots(client: Any) -> None:
    reply = client.get("/ui")
    assert reply.status_code == 200 and reply.mimetype == "text/html"
    assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
    page = parse(reply.get_data(as_text=True))
    assert len(page.tables["versions-demo"]) == 4 and "runs" in page.tables
    for link in [x for x in page.links if x.startswith("/ui/models/")]:
        assert client.get(link).status_code == 200, link
    version = client.get("/ui/models/demo/2/index.html")
    assert version.status_code == 200 and "demo version 2" in version.get_data(as_text=True)
    plot = client.get("/ui/models/demo/2/plot-calibration.png")
    assert plot.status_code == 200 and plot.mimetype == "image/png" and plot.data.startswith(b"\x89PNG")


@pytest.mark.parametrize("path", ["/ui/models/demo/2/model.lgb.txt", "/ui/models/demo/2/metadata.json", "/ui/models/demo/9/index.html",
                                  "/ui/models/nope/1/index.html", "/ui/models/..%2F..%2Fetc/1/report.html", "/ui/models/demo/2/plot-nope.png"])
def test_ui_answers_404_for_anything_but_a_report(client: Any, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 404 and reply.is_json


def test_a_browser_reloading_an_unchanged_page_gets_304(client: Any) -> None:
    first = client.get("/ui")
    again = client.get("/ui", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert client.get("/ui", headers={"If-None-Match": '"other"'}).status_code == 200


def test_versions_not_verified_within_the_budget_are_marked_pending_then_checked(store: Path) -> None:
    models = ModelStore(store / "models")
    cache = VersionCache(models)
    first = collect(models, cache, None, budget_s=0)
    assert [(v.version, v.pending, v.verified) for v in first.models[0].versions][:2] == [("1", True, False), ("2", True, False)]
    assert first.models[0].versions[0].metrics == json.loads((store / "models/demo/1/metadata.json").read_text())["metrics"]
    html = overview_page(first, SERVER_LINKS)
    assert "not checked yet" in html and "UNVERIFIED" not in html
    later = collect(models, cache, None, budget_s=10)
    assert all(v.verified and not v.pending for v in later.models[0].versions)


def test_runs_started_in_the_same_second_list_the_one_written_last_first(tmp_path):
    import json
    import os

    from mljobs.overview.recent_runs import RecentRuns

    # Same second, random suffixes that sort the other way round from the order they ran in.
    for name, job, written in (("20261126T010203Z-ffffff", "first", 1_000), ("20261126T010203Z-000000", "second", 2_000),
                               ("20261126T010202Z-999999", "earlier", 3_000)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"job": job}))
        os.utime(path, ns=(written * 10**9, written * 10**9))
    assert [r["job"] for r in RecentRuns(tmp_path).records()] == ["second", "first", "earlier"]
