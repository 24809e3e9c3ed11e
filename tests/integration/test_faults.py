"""The fault suite, bounded and on 127.0.0.1: workers and replicas killed or stopped under slow
load, a full output volume, every artifact flipped by one byte, booby-trapped pickles where a
model should be, and schemathesis against the served OpenAPI document. Each test records its
figures in the table printed at the end of the run (tests/fault_table.py) and asserts them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
import requests

from mljobs import demo
from tests.fault_table import record
from tests.integration.conftest import image
from tests.integration.load import Load

pytestmark = pytest.mark.integration
# About 2.5 MB of JSON: a request that keeps a worker busy for a while.
SLOW_BODY = demo.scoring_table(rows=20_000, seed=40).drop_columns([demo.ID_COLUMN]).to_pylist()
# The workers of a serve container: the children of gunicorn's master, which is PID 1.
LIST_WORKERS = """
import os
for pid in filter(str.isdigit, os.listdir('/proc')):
    stat = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    if stat[1] == '1':
        print(pid)
"""


@pytest.fixture(scope="module")
def fleet(compose):
    return compose.start_fleet(replicas=2)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


def workers(container: str) -> list[int]:
    return [int(p) for p in docker("exec", container, "python", "-c", LIST_WORKERS).stdout.split()]


def lb_log(fleet) -> str:
    return fleet("logs", "lb").stdout


def cut_off(fleet) -> int:
    """nginx's count of requests an upstream dropped mid-way (closed, or reset if it was still
    reading the body); each one is retried on another replica."""
    return sum(("prematurely closed" in line or "reset by peer" in line) and "upstream" in line
               for line in lb_log(fleet).splitlines())


def test_a_gunicorn_worker_killed_mid_request_loses_no_request(fleet):
    replicas = running_replicas(fleet)
    interrupted_before = cut_off(fleet)
    # MLflow's route answers labels only: a slow request with a short reply, so a kill lands while
    # the request is worked on. A worker killed while it writes a reply cuts off a response that
    # nginx has begun to pass on and cannot retry; the shorter the reply, the rarer that is.
    body = {"dataframe_records": SLOW_BODY}
    with Load(fleet.url("/invocations", lb=True), threads=4, body=body, timeout=30) as load:
        time.sleep(2)
        # One replica takes the kills: a request cut off there is retried on the other, which a
        # kill of its own within that request's lifetime (a double fault) would also cut off.
        container = replicas[0]
        for _ in range(4):
            docker("exec", container, "python", "-c", f"import os, signal; os.kill({workers(container)[0]}, signal.SIGKILL)")
            time.sleep(2)
        answered_by_last_kill = load.sent
        deadline = time.monotonic() + 30
        while load.sent == answered_by_last_kill and time.monotonic() < deadline:  # the fleet answers again
            time.sleep(0.2)
    interrupted = cut_off(fleet) - interrupted_before
    record(f"gunicorn worker SIGKILLed mid-request x4 ({interrupted} cut off, retried by nginx)", load.sent, "requests", "failed", load.failures())
    upstream_errors = [line for line in lb_log(fleet).splitlines() if "upstream" in line][-8:]
    # Properties, not throughput: nothing failed, and requests were answered after the last kill.
    assert load.failures() == 0 and load.sent > answered_by_last_kill, (load.statuses, load.errors[:5], upstream_errors)
    assert interrupted >= 1  # the kills did land in the middle of requests


def post_slow(url: str) -> int | str:
    try:
        return requests.post(url, json=SLOW_BODY, timeout=30).status_code
    except requests.RequestException as exc:
        return type(exc).__name__


def running_replicas(fleet) -> list[str]:
    return [c for c in fleet.containers("serve") if docker("inspect", "-f", "{{.State.Running}}", c).stdout.strip() == "true"]


def restore_fleet(fleet) -> None:
    assert fleet("up", "-d", "--scale", "serve=2", "--no-recreate", "serve").returncode == 0
    fleet.wait_ready(lb=True)


def test_docker_stop_lets_the_requests_in_flight_finish(fleet):
    """Straight to one replica (no other traffic, so each of its two workers has accepted one
    slow request): `docker stop` must let both finish."""
    victim = running_replicas(fleet)[0]
    url = fleet.replica_url("/predict", victim)
    try:
        with ThreadPoolExecutor(2) as pool:
            in_flight = [pool.submit(post_slow, url) for _ in range(2)]
            time.sleep(0.3)
            docker("stop", "--time", "15", victim)
            answers = [f.result() for f in in_flight]
    finally:
        restore_fleet(fleet)
    record("docker stop during slow requests, in flight on that replica", len(answers), "requests", "failed", sum(a != 200 for a in answers))
    assert answers == [200, 200]


def test_docker_stop_of_a_replica_during_slow_requests_loses_none_through_nginx(fleet):
    victim = running_replicas(fleet)[0]
    try:
        with Load(fleet.url("/predict", lb=True), threads=4, body=SLOW_BODY, timeout=30) as load:
            time.sleep(2)
            docker("stop", "--time", "15", victim)
            answered_by_stop = load.sent
            deadline = time.monotonic() + 30
            while load.sent == answered_by_stop and time.monotonic() < deadline:  # the rest of the fleet answers
                time.sleep(0.2)
    finally:
        restore_fleet(fleet)
    record("docker stop during slow requests, through nginx", load.sent, "requests", "failed", load.failures())
    # Properties, not throughput: nothing failed, and requests were answered after the stop.
    assert load.failures() == 0 and load.sent > answered_by_stop, (load.statuses, load.errors[:5])


def test_a_full_output_volume_fails_with_a_clear_reason_and_leaves_nothing(fleet):
    volume = f"{fleet.project}_full"
    docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
           "--opt", "o=size=2m,uid=10001,gid=10001", "--label", f"com.docker.compose.project={fleet.project}", volume)
    pacsv.write_csv(demo.scoring_table(rows=300_000, seed=41), fleet.data_dir / "input" / "many.csv")
    result = fleet("run", "--rm", "-T", "-v", f"{volume}:/data/full", "predict", "--input", "/data/input/many.csv",
                   "--output", "/data/full", "--format", "csv", "--keep-columns", demo.ID_COLUMN)
    left = docker("run", "--rm", "-v", f"{volume}:/x", "--entrypoint", "find", image("predict"), "/x", "-mindepth", "1").stdout.split()
    record("output volume full (2 MB tmpfs)", 1, "runs", "partial outputs", len(left))
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("predict failed: input/output error:")
    assert "No space left on device" in result.stderr
    assert left == []  # not even the hidden staging folder


def test_every_artifact_flipped_by_one_byte_is_refused(fleet):
    flip = """
import json, pathlib, shutil
src, root = pathlib.Path('/models/demo/1'), pathlib.Path('/models/flipped')
names = sorted(p.relative_to(src).as_posix() for p in src.rglob('*') if p.is_file())
for n, name in enumerate(names, start=1):
    shutil.copytree(src, root / str(n))
    target = root / str(n) / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
print(json.dumps(names))
"""
    made = fleet("run", "--rm", "-T", "--entrypoint", "python", "models", "-c", flip)
    assert made.returncode == 0, made.stderr[-2000:]
    names = json.loads(made.stdout.strip().splitlines()[-1])
    outcomes = {name: fleet.run("predict", "--model", f"flipped:{n}", "--force") for n, name in enumerate(names, start=1)}
    refused = [name for name, r in outcomes.items() if r.returncode == 4 and "is refused" in r.stderr]
    record("one byte flipped in a model artifact (each file of a version)", len(names), "artifacts", "refused", len(refused), len(names))
    assert {"MANIFEST", "model.lgb.txt", "schema.json", "metadata.json"} <= set(names)
    assert refused == names, {n: r.stderr[-300:] for n, r in outcomes.items() if n not in refused}
    assert not list((fleet.data_dir / "output").glob("model=flipped"))
    remove_from_store(fleet, "flipped")


def remove_from_store(fleet, *paths: str) -> None:
    """Take what a test planted out of the fleet's store: the servers would answer 503 for it
    (refused), which later tests (the fuzzer) would rightly count as server errors."""
    removed = fleet("run", "--rm", "-T", "--entrypoint", "rm", "models", "-rf", *(f"/models/{p}" for p in paths))
    assert removed.returncode == 0, removed.stderr[-2000:]


TRAPS = """
import os, pathlib, pickle, shutil
import skops.io
from mljobs.store import write_manifest

class Trap:
    '''Unpickling this runs a shell command that leaves a marker file.'''
    def __init__(self, tag):
        self.tag = tag
    def __reduce__(self):
        return (os.system, (f'touch /runs/PWNED-{self.tag} /tmp/PWNED-{self.tag} 2>/dev/null',))

def variant(model, version, target, payload, listed):
    src, dst = pathlib.Path(f'/models/{model}/1'), pathlib.Path(f'/models/{model}/{version}')
    shutil.copytree(src, dst)
    (dst / target).write_bytes(payload)
    if listed:  # the attacker rewrites the MANIFEST to match (no key: an unsigned store)
        write_manifest(dst)

variant('trap', 2, 'model.skops', pickle.dumps(Trap('skops-listed')), True)
variant('trap', 3, 'model.skops', pickle.dumps(Trap('skops-unlisted')), False)
variant('trap', 4, 'model.pkl', pickle.dumps(Trap('beside')), False)
variant('trap', 5, 'model.skops', skops.io.dumps(Trap('in-skops')), True)
variant('demo', 90, 'model.lgb.txt', pickle.dumps(Trap('lightgbm-listed')), True)
variant('demo', 91, 'model.lgb.txt', pickle.dumps(Trap('served')), True)
"""


def markers(fleet) -> list[str]:
    """PWNED files on the runs volume (predict's writable place) and in every replica's /tmp."""
    found = fleet("run", "--rm", "-T", "--entrypoint", "ls", "models", "-A", "/runs").stdout.split()
    for container in running_replicas(fleet):
        found += docker("exec", container, "ls", "-A", "/tmp").stdout.split()
    return sorted(f for f in found if f.startswith("PWNED-"))


def test_booby_trapped_pickles_where_a_model_should_be_never_run(fleet):
    trained = fleet.run("train", "--model", "trap", "--estimator", "sklearn.linear_model.LogisticRegression")
    assert trained.returncode == 0, trained.stderr[-2000:]
    made = fleet("run", "--rm", "-T", "--entrypoint", "python", "models", "-c", TRAPS)
    assert made.returncode == 0, made.stderr[-2000:]
    placements = ["trap:2", "trap:3", "trap:4", "trap:5", "demo:90"]
    outcomes = {ref: fleet.run("predict", "--model", ref, "--force") for ref in placements}
    # The served model's alias pointed at a trapped version behind the store's back.
    serving = requests.get(fleet.url("/version", lb=True), timeout=5).json()["model"]["version"]
    fleet("run", "--rm", "-T", "--entrypoint", "sh", "models", "-c", "echo 91 > /models/demo/aliases/production")
    with Load(fleet.url("/predict", lb=True)) as load:
        time.sleep(6)
    fired = markers(fleet)
    refused = [ref for ref, r in outcomes.items() if r.returncode == 4 and f"model {ref} is refused" in r.stderr]
    refused += ["demo:91 (served)"] if {v for _, v in load.versions} == {serving} else []
    record("booby-trapped pickle where a model should be", len(placements) + 1, "placements", "refused", len(refused), len(placements) + 1)
    record("booby-trapped pickle where a model should be", len(placements) + 1, "placements", "marker files", len(fired))
    assert fired == [], fired
    assert len(refused) == len(placements) + 1, {ref: r.stderr[-300:] for ref, r in outcomes.items()}
    assert load.failures() == 0
    assert fleet.run("models", "promote", "demo", serving, "--alias", "production").returncode == 0

    # Control: the trap is live. Unpickled the naive way, it leaves its marker.
    control = fleet("run", "--rm", "-T", "--entrypoint", "python", "train", "-c",
                    "import pickle; pickle.loads(open('/models/trap/2/model.skops', 'rb').read())")
    assert control.returncode == 0 and "PWNED-skops-listed" in markers(fleet)
    remove_from_store(fleet, "trap", "demo/90", "demo/91")


def test_schemathesis_finds_no_5xx_and_no_answer_off_the_document(fleet, tmp_path):
    report = tmp_path / "schemathesis.ndjson"
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", fleet.url("/openapi.json", lb=True), "--wait-for-schema", "30",
               "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
               "--max-examples", "60", "--seed", "1", "--request-timeout", "10",
               "--report", "ndjson", "--report-ndjson-path", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    statuses = []
    for line in report.read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if event:
            statuses += [i["response"]["status_code"] for i in event["recorder"].get("interactions", {}).values() if i.get("response")]
    record("schemathesis against /openapi.json (real HTTP)", len(statuses), "requests", "5xx", sum(s >= 500 for s in statuses))
    assert result.returncode == 0, result.stdout[-4000:]
    assert len(statuses) > 100 and not any(s >= 500 for s in statuses)
