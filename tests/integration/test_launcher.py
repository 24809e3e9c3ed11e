"""The `mljobs` launcher against the real engine, sharing volumes with the compose path."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mljobs import demo
from mljobs.launcher import cli
from tests.datasets import multiclass_table
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def host_dir(tmp_path):
    """A folder of the user's, readable by the job's uid like an ordinary home folder."""
    folder = tmp_path / "host"
    folder.mkdir(mode=0o755)
    return folder


@pytest.fixture
def launcher(compose, monkeypatch, capsys):
    """Run `mljobs ...` in-process on the compose fixture's project; returns (code, stdout, stderr)."""
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", compose.project)

    def run(*argv: str):
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def labelled(kind: str, project: str) -> list[str]:
    flag = ["-a"] if kind == "container" else []
    return subprocess.run(["docker", kind, "ls", "-q", *flag, "--filter", f"label=org.mljobs.project={project}"],
                          capture_output=True, text=True).stdout.split()


def test_launcher_and_compose_give_the_same_model_and_predictions(compose, launcher, host_dir):
    table = multiclass_table()
    pacsv.write_csv(table, compose.data_dir / "input" / "species.csv")
    pacsv.write_csv(table, host_dir / "species.csv")
    new = table.drop_columns(["species"]).slice(0, 200)
    pacsv.write_csv(new, compose.data_dir / "input" / "new-species.csv")
    pacsv.write_csv(new, host_dir / "new-species.csv")

    assert compose.run("train", "--input", "/data/input/species.csv", "--target", "species", "--model", "by-compose").returncode == 0
    code, _, err = launcher("train", "--input", str(host_dir / "species.csv"), "--target", "species", "--model", "by-launcher")
    assert code == 0, err
    assert "train done" in err

    assert compose.run("predict", "--model", "by-compose", "--input", "/data/input/new-species.csv", "--proba").returncode == 0
    out = host_dir / "out"
    out.mkdir()
    out.chmod(0o777)
    code, _, err = launcher("predict", "--model", "by-launcher", "--input", str(host_dir / "new-species.csv"),
                            "--output", str(out), "--proba")
    assert code == 0, err
    [by_compose] = (compose.data_dir / "output").glob("model=by-compose/date=*/run=*/predictions.parquet")
    [by_launcher] = out.glob("model=by-launcher/date=*/run=*/predictions.parquet")
    assert pq.read_table(by_launcher).equals(pq.read_table(by_compose))

    code, listing, _ = launcher("runs", "--json", "--last", "100")
    records = json.loads(listing)
    mine = {(r["job"], r["model"].get("name"), r["started_by"]): r for r in records if r.get("model")}
    assert mine[("predict", "by-compose", "compose")]["rows"] == {"in": 200, "out": 200, "rejected": 0}
    assert mine[("predict", "by-launcher", "mljobs")]["rows"] == {"in": 200, "out": 200, "rejected": 0}
    assert mine[("train", "by-launcher", "mljobs")]["status"] == "succeeded"

    code, listing, _ = launcher("models", "list", "--json")
    assert {"by-compose", "by-launcher"} <= {m["name"] for m in json.loads(listing)}


def test_bad_input_is_reported_as_bad_input_with_its_reason(launcher, host_dir):
    (host_dir / "one-class.csv").write_text("a,label\n1,x\n2,x\n3,x\n")
    code, _, err = launcher("train", "--input", str(host_dir / "one-class.csv"), "--target", "label", "--model", "bad")
    assert code == 3
    assert "train failed (bad input data, exit 3): train failed: target column 'label' has 1 class(es)" in err.replace("\n", " ")


def test_clear_errors_for_a_missing_input_and_a_missing_model(launcher, host_dir):
    code, _, err = launcher("predict", "--input", str(host_dir / "nope.csv"), "--output", str(host_dir))
    assert code == 3 and "nope.csv: no such file or folder" in err and "Traceback" not in err
    code, _, err = launcher("predict", "--model", "ghost", "--output", str(host_dir))
    assert code == 2 and "cannot write to /data/output: it belongs to uid 0" in err  # root's folder, job uid 10001
    host_dir.chmod(0o777)
    code, _, err = launcher("predict", "--model", "ghost", "--output", str(host_dir))
    assert code == 4 and "model 'ghost' does not exist" in err


def test_timeout_kills_a_long_job_and_leaves_no_container(compose, launcher, host_dir):
    assert compose.run("train").returncode == 0
    pq.write_table(demo.scoring_table(rows=3_000_000), host_dir / "big.parquet")
    out = host_dir / "out"
    out.mkdir()
    out.chmod(0o777)
    code, _, err = launcher("predict", "--input", str(host_dir / "big.parquet"), "--output", str(out), "--timeout", "3")
    assert code == 124 and "timed out after 3 s and was killed" in err
    assert [c for c in labelled("container", compose.project)] == []
    assert not list(out.glob("model=*/date=*/run=*"))


def test_serve_fleet_up_scale_status_down(compose, launcher):
    import requests

    if "demo" not in [m["name"] for m in json.loads(launcher("models", "list", "--json")[1])]:
        assert compose.run("train").returncode == 0
    port = compose.lb_port + 1 if compose.lb_port < 65000 else compose.lb_port - 1
    code, _, err = launcher("serve", "up", "--replicas", "2", "--port", str(port))
    assert code == 0, err
    reply = requests.post(f"http://127.0.0.1:{port}/predict", json=demo.scoring_table(rows=1).to_pylist()[0], timeout=10)
    assert reply.status_code == 200
    assert launcher("serve", "scale", "3")[0] == 0
    code, status, _ = launcher("serve", "status", "--json")
    assert sorted(r["role"] for r in json.loads(status)) == ["lb", "serve", "serve", "serve"]

    moved = free_port()  # asking for another port moves the running balancer there
    code, _, err = launcher("serve", "up", "--replicas", "3", "--port", str(moved))
    assert code == 0 and f"http://127.0.0.1:{moved} " in err, err
    reply = requests.post(f"http://127.0.0.1:{moved}/predict", json=demo.scoring_table(rows=1).to_pylist()[0], timeout=10)
    assert reply.status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/ping", timeout=5)

    with socket.socket() as holder:  # a port some other program holds: one line, exit 2, the fleet stays
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        code, _, err = launcher("serve", "up", "--replicas", "3", "--port", str(taken))
    assert code == 2 and err.startswith(f"error: port {taken} on 127.0.0.1 is already in use"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert requests.get(f"http://127.0.0.1:{moved}/ping", timeout=10).status_code == 200
    code, status, _ = launcher("serve", "status", "--json")
    assert [r["published"] for r in json.loads(status) if r["role"] == "lb"] == [f"127.0.0.1:{moved}"]

    assert launcher("serve", "down")[0] == 0
    assert labelled("container", compose.project) == [] and labelled("network", compose.project) == []


def test_sql_through_the_launcher_with_host_files_as_tables(compose, launcher, host_dir):
    if "demo" not in [m["name"] for m in json.loads(launcher("models", "list", "--json")[1])]:
        assert compose.run("train").returncode == 0
    pq.write_table(demo.scoring_table(rows=40), host_dir / "new.parquet")
    out = host_dir / "sql-out"
    out.mkdir()
    out.chmod(0o777)
    code, _, err = launcher("sql", "--table", f"new={host_dir / 'new.parquet'}", "--output", str(out),
                            "SELECT customer_id, predict_demo(t) AS churn FROM new t")
    assert code == 0, err
    [result] = out.glob("job=sql/date=*/run=*/result.parquet")
    assert pq.read_table(result).num_rows == 40


def test_two_tables_and_the_output_in_one_folder(compose, launcher, host_dir):
    if "demo" not in [m["name"] for m in json.loads(launcher("models", "list", "--json")[1])]:
        assert compose.run("train").returncode == 0
    rows = demo.scoring_table(rows=30)
    pq.write_table(rows.select(["customer_id", "age", "tenure_months", "monthly_charges"]), host_dir / "a.parquet")
    pacsv.write_csv(rows.drop_columns(["age", "tenure_months", "monthly_charges"]), host_dir / "b.csv")
    host_dir.chmod(0o777)  # the output goes beside the inputs, written by the job's uid
    query = "SELECT customer_id, predict_demo(t) AS churn FROM (SELECT * FROM a JOIN b USING (customer_id)) t"
    code, _, err = launcher("sql", "--table", f"a={host_dir / 'a.parquet'}", "--table", f"b={host_dir / 'b.csv'}",
                            "--output", str(host_dir), query)
    assert code == 0, err
    [result] = host_dir.glob("job=sql/date=*/run=*/result.parquet")
    assert pq.read_table(result).num_rows == 30
    assert sorted(p.name for p in host_dir.iterdir()) == ["a.parquet", "b.csv", "job=sql"]


def test_a_docker_context_reaches_the_engine(compose, launcher, tmp_path, monkeypatch):
    """A context as `docker context create` writes it, pointing at this engine through another path."""
    config = tmp_path / "docker-config"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"mljobs-test").hexdigest()
    meta.mkdir(parents=True)
    (config / "config.json").write_text('{"currentContext": "mljobs-test"}')
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        pytest.skip("the engine is not on a local socket")
    engine_socket = tmp_path / "engine.sock"
    engine_socket.symlink_to(host[len("unix://"):])
    (meta / "meta.json").write_text(json.dumps({"Name": "mljobs-test", "Metadata": {}, "Endpoints": {
        "docker": {"Host": f"unix://{engine_socket}", "SkipTLSVerify": False}}}))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    code, listing, err = launcher("models", "list", "--json")
    assert code == 0, err
    assert isinstance(json.loads(listing), list)
    code, records, err = launcher("runs", "--json", "--last", "1000")
    assert code == 0 and isinstance(json.loads(records), list), err
    engine_socket.unlink()
    code, _, err = launcher("runs")
    assert code == 1 and f"unix://{engine_socket} (docker context 'mljobs-test')" in err


def test_a_killed_job_shows_as_lost_not_running_forever(compose, launcher):
    started = compose("run", "-d", "train", "--model", "to-be-killed", "--params", '{"num_boost_round": 100000}')
    container = started.stdout.strip().splitlines()[-1]
    container_id = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", container], capture_output=True, text=True).stdout.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once its run record says "running"
        _, listing, _ = launcher("runs", "--json", "--last", "100")
        if any(r["host"] == container_id[:12] for r in json.loads(listing)):
            break
        time.sleep(0.5)
    subprocess.run(["docker", "kill", container], capture_output=True)
    subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    code, listing, _ = launcher("runs", "--json", "--last", "100")
    assert code == 0
    [killed] = [r for r in json.loads(listing) if r["host"] == container_id[:12]]
    assert killed["status"] == "lost" and "killed" in killed["reason"]
    running = [r for r in json.loads(listing) if r["status"] == "running"]
    assert running == []
