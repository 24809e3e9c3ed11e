"""The store overview page (GET /ui) on a big store, and what loading it costs the scoring routes,
side by side in one run:

  - a store of 50 versions (alias moves among them) and 1,000 run records, served by gunicorn
    with the serve image's config (2 workers) on 127.0.0.1
  - /ui: the first answers of the workers (each verifies the versions it can within 100 ms and
    marks the rest not checked yet), the seconds until every version shows as checked, then 300
    answers in a row (the page is rendered at most every 2 s per worker; versions stay verified),
    and the render itself without the page cache (what a worker pays every 2 s under load)
  - POST /predict with wrk (c=4), in turn with nothing else running, with a second wrk (one
    connection) loading /ping in a tight loop (the cost of any second client on these cores), and
    loading /ui in a tight loop (the whole page every time, no If-None-Match: worse than a browser
    reloading, which gets 304 Not Modified while the page is unchanged); two rounds each,
    interleaved, so that noise hits them alike. /ui against /ping is what the page itself costs.

    .venv/bin/python bench/ui_overview.py [--seconds 8]

Needs wrk (apt-get install wrk). Targets (issue 15): /ui within 200 ms; scoring latency with /ui
loaded in a loop the same as without, within noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO / "shared"))
from serve_http import JSON, Target, free_port, wait_up, wrk  # noqa: E402

from mljobs import demo  # noqa: E402
from mljobs.jobs import train  # noqa: E402
from mljobs.manifest import MANIFEST, write_manifest  # noqa: E402
from mljobs.overview.collect import VersionCache, collect  # noqa: E402
from mljobs.overview.html_parts import SERVER_LINKS  # noqa: E402
from mljobs.overview.page import overview_page  # noqa: E402
from mljobs.overview.recent_runs import RecentRuns  # noqa: E402
from mljobs.store import ModelStore  # noqa: E402

VERSIONS, RUNS = 50, 1000


def big_store(work: Path) -> ModelStore:
    """demo:1 trained, copied to versions 2..50 with their own metrics (and MANIFESTs), aliases moved."""
    models, runs = work / "models", work / "runs"
    assert train.main(["--models-dir", str(models), "--runs-dir", str(runs), "--log-level", "WARNING"]) == 0
    first = models / "demo" / "1"
    for version in range(2, VERSIONS + 1):
        folder = models / "demo" / str(version)
        shutil.copytree(first, folder)
        meta = json.loads((folder / "metadata.json").read_text())
        meta["metrics"] = {k: round(v * (1 + 0.002 * ((version * 7) % 11 - 5)), 6) for k, v in meta["metrics"].items()}
        meta["created"] = f"2026-01-{1 + version % 28:02d}T00:00:00+00:00"
        (folder / "metadata.json").write_text(json.dumps(meta, indent=2))
        (folder / MANIFEST).unlink()
        write_manifest(folder)
    store = ModelStore(models)
    for version in ("10", "20", "30", "40", "45"):
        store.promote("demo", version, "production")
    store.rollback("demo", "production")
    for i in range(RUNS):
        job = ("predict", "sql", "train", "models")[i % 4]
        record = {"job": job, "run_id": f"20260101T{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}Z-{i:06x}", "status": "succeeded",
                  "started": "2026-01-01T00:00:00+00:00", "duration_s": 1.5, "model": {"name": "demo", "version": str(1 + i % VERSIONS)},
                  "rows": {"in": 1000, "out": 990, "rejected": 10} if job == "predict" else {}, "exit_code": 0,
                  "started_by": "airflow", "host": "bench"}
        (runs / f"{record['run_id']}.json").write_text(json.dumps(record, indent=2))
    return store


def timed_get(session: requests.Session, url: str) -> float:
    start = time.perf_counter()
    reply = session.get(url, timeout=30)
    assert reply.status_code == 200, reply.status_code
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = big_store(work)
        port = free_port()
        env = {**os.environ, "MLJOBS_MODELS_DIR": str(work / "models"), "MLJOBS_RUNS_DIR": str(work / "runs"), "MLJOBS_MODEL": "demo",
               "MLJOBS_WORKERS": "2", "MLJOBS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
               "PYTHONPATH": str(REPO / "shared")}
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "images/serve/gunicorn.conf.py"),
                                   "mljobs.serve.app:create_app()"], env=env, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_up(f"{base}/ping")
            # Each request on a new connection, so both workers answer some.
            cold = [timed_get(requests.Session(), f"{base}/ui") for _ in range(4)]
            started = time.perf_counter()
            while "not checked yet" in requests.get(f"{base}/ui", timeout=30).text:  # in both workers
                time.sleep(0.2)
            all_checked = time.perf_counter() - started
            session = requests.Session()
            warm = sorted(timed_get(session, f"{base}/ui") for _ in range(300))
            cache = VersionCache(store)
            runs = RecentRuns(work / "runs")
            overview_page(collect(store, cache, runs), SERVER_LINKS)
            renders = []
            for _ in range(30):
                start = time.perf_counter()
                overview_page(collect(store, cache, runs), SERVER_LINKS)
                renders.append((time.perf_counter() - start) * 1000)

            record = demo.scoring_table(rows=1, seed=1).drop_columns([demo.ID_COLUMN]).to_pylist()[0]
            target = Target(f"{base}/predict", json.dumps(record).encode(), f"{base}/ping", JSON)
            results: dict[str, list[dict[str, float]]] = {"quiet": [], "/ping in a loop": [], "/ui in a loop": []}
            loads = {"/ping": 0.0, "/ui": 0.0}
            for _ in range(2):
                for phase in results:
                    path = phase.split()[0]
                    loader = subprocess.Popen(["wrk", "-t1", "-c1", f"-d{args.seconds}s", f"{base}{path}"], stdout=subprocess.PIPE,
                                              text=True) if phase != "quiet" else None
                    results[phase].append(wrk(target, 4, args.seconds, work))
                    if loader:
                        found = re.search(r"Requests/sec:\s+([\d.]+)", loader.communicate()[0])
                        loads[path] += float(found.group(1)) / 2 if found else 0
        finally:
            server.terminate()
            server.wait(15)

    print(f"\nGET /ui with {VERSIONS} versions and {RUNS} run records, gunicorn (2 workers), {os.cpu_count()} cores")
    print(f"  first answers of the workers (verifying for up to 100 ms each): {', '.join(f'{c:.0f}' for c in cold)} ms; "
          f"every version shown as checked {all_checked:.1f} s later")
    print(f"  then 300 in a row: median {statistics.median(warm):.1f} ms, p95 {warm[int(0.95 * len(warm))]:.1f} ms, "
          f"max {warm[-1]:.1f} ms (target: under 200 ms)")
    print(f"  the render without the page cache, versions verified: median {statistics.median(renders):.1f} ms")
    print(f"\nPOST /predict, wrk c=4, {args.seconds} s x 2 rounds each, interleaved "
          f"(meanwhile the looping client got {loads['/ping']:.0f} /ping/s, {loads['/ui']:.0f} /ui/s)")
    quiet = {k: statistics.median(r[k] for r in results["quiet"]) for k in ("rps", "p50", "p99")}
    for phase, rounds in results.items():
        med = {k: statistics.median(r[k] for r in rounds) for k in ("rps", "p50", "p99")}
        errors = sum(r["non2xx"] for r in rounds)
        print(f"  {phase:<16} {med['rps']:8.0f} req/s (x{med['rps'] / quiet['rps']:.2f})   p50 {med['p50']:.2f} ms "
              f"(x{med['p50'] / quiet['p50']:.2f})   p99 {med['p99']:.2f} ms (x{med['p99'] / quiet['p99']:.2f})   non-2xx {errors}")


if __name__ == "__main__":
    main()
