"""The model store and batch data in S3, end to end in containers against a real S3 server
(SeaweedFS, tests/s3.py): train -> promote -> batch predict (S3 in, S3 out) -> serve (hot swap on
promote) -> sql, with compose and nothing but exported variables (MLJOBS_STORE and AWS_*), and
predictions equal to the volume store's on the same data. Then the faults, each in the fault
table: the server killed mid-publish and mid-batch, a flipped byte, wrong credentials, an
unreachable endpoint, and a serve replica whose store goes away.

The containers reach the server through a relay on the Docker bridge's gateway address, which
also lets a test kill the server at an exact request (tests/s3.py: Relay)."""

from __future__ import annotations

import copy
import io
import json
import re
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests
from pyarrow import fs as pafs

from mljobs import demo
from mljobs.objectstore import S3Path
from mljobs.s3storage import S3Storage
from mljobs.store import ModelStore
from tests import s3
from tests.fault_table import record
from tests.integration.conftest import REPO, Compose
from tests.integration.load import Load
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, Relay, S3Server, docker_gateway

pytestmark = pytest.mark.integration
s3_server = s3.s3_server  # the real S3 server's fixture, for this module


@dataclass
class Site:
    """One bucket on the S3 server, and the compose project seen two ways: with the S3 store
    exported, and as it is by default (models on the volume)."""

    server: S3Server
    relay: Relay
    bucket: str
    s3: Compose
    volume: Compose
    cache: Path  # the host-side reader's model cache

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}".rstrip("/")

    def store(self) -> ModelStore:
        """The S3 store as a reader on the host sees it (straight to the server, a cache of its own)."""
        return ModelStore(self.url("models"), storage=S3Storage(S3Path.parse(self.url("models")), self.server.client(), self.cache))

    def objects(self, prefix: str) -> dict[str, pafs.FileInfo]:
        """The objects under a prefix, by key (the bucket left out)."""
        infos = self.server.client().get_file_info(  # type: ignore[attr-defined]
            pafs.FileSelector(f"{self.bucket}/{prefix}", recursive=True, allow_not_found=True))
        return {i.path.split("/", 1)[1]: i for i in infos if i.type == pafs.FileType.File}

    def read(self, key: str) -> bytes:
        with self.server.client().open_input_stream(f"{self.bucket}/{key}") as f:  # type: ignore[attr-defined]
            return bytes(f.read())

    def write(self, key: str, data: bytes) -> None:
        with self.server.client().open_output_stream(f"{self.bucket}/{key}") as out:  # type: ignore[attr-defined]
            out.write(data)

    def write_parquet(self, key: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.write(key, sink.getvalue())

    def read_parquet(self, key: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self.read(key)))

    def committed_runs(self, prefix: str) -> list[str]:
        """The run prefixes under `prefix` that hold a _SUCCESS."""
        return sorted(k.rsplit("/", 1)[0] for k in self.objects(prefix) if k.endswith("/_SUCCESS"))


def with_env(compose: Compose, **variables: str) -> Compose:
    """The same compose project, with other exported variables (as a user's shell would have)."""
    other = copy.copy(compose)
    other.env = {**compose.env, **variables}
    return other


def in_parallel(*calls: Callable[[], subprocess.CompletedProcess]) -> list[subprocess.CompletedProcess]:
    """Container runs that do not depend on each other, side by side (most of each is start-up)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def closed_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def last_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


@contextmanager
def brought_back(server: S3Server) -> Iterator[None]:
    """Whatever the block does to the server, it is up again afterwards."""
    try:
        yield
    finally:
        if server.process.poll() is not None:
            server.start()


ROWS = demo.scoring_table(rows=400, seed=11)


@pytest.fixture(scope="module")
def site(compose: Compose, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if s3_server.process.poll() is not None:  # another module's test killed it
        s3_server.start()
    relay = Relay(docker_gateway(), s3_server.port)
    bucket = f"it-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_dir(bucket)  # type: ignore[attr-defined]
    exported = {"MLJOBS_STORE": f"s3://{bucket}/models", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": relay.endpoint}
    here = Site(s3_server, relay, bucket, with_env(compose, **exported), compose, tmp_path_factory.mktemp("model-cache"))
    here.write_parquet("in/new.parquet", ROWS)
    pq.write_table(ROWS, compose.data_dir / "input" / "new.parquet")
    yield here
    relay.close()


@dataclass
class CutPublish:
    """A train whose publish lost the server at its second upload, and the retry."""

    before: list[str]  # the versions before it
    touched: list[str]  # the files of the new version the job reached, in order
    killed: subprocess.CompletedProcess
    after_kill: list[str]  # the versions a reader saw then
    left: list[str]  # what the cut publish left in the bucket
    retry: subprocess.CompletedProcess
    published: str  # the version the retry published


def publish_with_the_server_killed(site: Site, *train_args: str) -> CutPublish:
    before = site.store().versions("demo")
    prefix = f"/{site.bucket}/models/demo/{int(before[-1]) + 1}/"
    touched: list[str] = []

    def kill_at_the_second_file(method: str, path: str) -> None:
        """A publish uploads one file after another: the first is stored whole, the MANIFEST never."""
        if path.startswith(prefix) and path[len(prefix):] not in touched:
            touched.append(path[len(prefix):])
            if len(touched) == 2:
                site.server.kill()

    site.relay.watch = kill_at_the_second_file
    with brought_back(site.server):
        try:
            killed = site.s3.run("train", *train_args)
        finally:
            site.relay.watch = None
    after_kill = site.store().versions("demo")
    left = sorted(k.rsplit("/", 1)[1] for k in site.objects(prefix.split("/", 2)[2].rstrip("/")))
    retry = site.s3.run("train", *train_args)
    published = re.findall(r"published demo:(\d+)", retry.stderr)
    return CutPublish(before, touched, killed, after_kill, left, retry, published[0] if len(published) == 1 else "")


@pytest.fixture(scope="module")
def trained(site: Site) -> CutPublish:
    """demo:1 in S3 and on the volume, trained alike; then a second S3 version (another seed),
    published by a retry after the server was killed in the middle of its first publish
    (test_the_s3_server_killed_mid_publish_...); production -> 1."""
    first = site.s3.run("train")  # alone: the first run of a project creates its network
    assert first.returncode == 0, first.stderr[-3000:]
    with ThreadPoolExecutor(1) as pool:  # the volume store's training needs no S3 server
        on_volume = pool.submit(site.volume.run, "train")
        cut = publish_with_the_server_killed(site, "--seed", "7")
    assert on_volume.result().returncode == 0, on_volume.result().stderr[-3000:]
    assert cut.retry.returncode == 0 and cut.published, cut.retry.stderr[-3000:]
    promoted = site.s3.run("models", "promote", "demo", "1")
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    return cut


def test_train_and_promote_write_versions_and_aliases_to_the_bucket(site, trained):
    listed = site.s3.run("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    [demo_model] = json.loads(listed.stdout)
    assert demo_model == {"name": "demo", "versions": ["1", trained.published],
                          "aliases": {"latest": trained.published, "production": "1"}}
    keys = set(site.objects("models/demo"))
    assert {"models/demo/1/MANIFEST", "models/demo/1/model.lgb.txt", f"models/demo/{trained.published}/MANIFEST",
            "models/demo/aliases/latest", "models/demo/aliases/production"} <= keys
    assert site.read("models/demo/aliases/production") == b"1\n"


@pytest.fixture(scope="module")
def batch(site: Site, trained) -> pa.Table:
    """production (demo:1) scored from S3 to S3; the committed run's predictions."""
    scored = site.s3.run("predict", "--input", site.url("in/new.parquet"), "--output", site.url("out"),
                         "--keep-columns", "customer_id", "--proba")
    assert scored.returncode == 0, scored.stderr[-3000:]
    [run] = site.committed_runs("out/model=demo")
    return site.read_parquet(f"{run}/predictions.parquet")


def test_batch_predict_from_s3_to_s3_equals_the_volume_store_and_commits_success_last(site, batch):
    again, on_volume = in_parallel(
        lambda: site.s3.run("predict", "--input", site.url("in/new.parquet"), "--output", site.url("out"),
                            "--keep-columns", "customer_id", "--proba"),
        lambda: site.volume.run("predict", "--input", "/data/input/new.parquet", "--keep-columns", "customer_id", "--proba"))
    assert on_volume.returncode == 0, on_volume.stderr[-3000:]
    [part] = (site.volume.data_dir / "output").glob("model=demo/date=*/run=*/predictions.parquet")
    assert batch.num_rows == ROWS.num_rows
    assert batch.to_pylist() == pq.read_table(part).to_pylist()  # ids, labels and probabilities, exactly

    [run] = site.committed_runs("out/model=demo")
    written = site.objects(run)
    assert set(written) == {f"{run}/predictions.parquet", f"{run}/_SUCCESS"}
    assert written[f"{run}/_SUCCESS"].mtime >= written[f"{run}/predictions.parquet"].mtime
    assert json.loads(site.read(f"{run}/_SUCCESS"))["rows"] == {"in": 400, "out": 400, "rejected": 0}
    # The same input, model and options again: found, nothing written.
    assert again.returncode == 0 and "already scored" in again.stderr, again.stderr[-2000:]
    assert site.committed_runs("out/model=demo") == [run]


@pytest.fixture(scope="module")
def serving(site: Site, trained) -> Compose:
    up = site.s3("up", "-d", "serve")
    assert up.returncode == 0, up.stderr[-3000:]
    site.s3.wait_ready()
    return site.s3


def served_version(url: str) -> str:
    return requests.post(url, json=ROWS.slice(0, 1).to_pylist()[0], timeout=10).headers["X-Model-Version"]


def test_serve_answers_from_s3_and_swaps_versions_on_promote(site, trained, batch, serving):
    reply = requests.post(serving.url("/predict"), json=ROWS.slice(0, 20).to_pylist(), timeout=10)
    assert reply.status_code == 200 and reply.headers["X-Model-Version"] == "1"
    served = [p["probabilities"]["yes"] for p in reply.json()["predictions"]]
    assert served == batch.column("proba_yes").to_pylist()[:20]

    new = trained.published
    with Load(serving.url("/predict"), threads=2) as load:
        promoted = site.s3.run("models", "promote", "demo", new)
        assert promoted.returncode == 0, promoted.stderr[-2000:]
        deadline = time.monotonic() + 30
        # Each gunicorn worker follows on its own: wait until every recent answer is the new version.
        while time.monotonic() < deadline and not (len(load.versions) > 10 and {v for _, v in load.versions[-10:]} == {new}):
            time.sleep(0.3)
    assert {v for _, v in load.versions[-10:]} == {new}, load.versions[-10:]
    assert load.failures() == 0, (load.statuses, load.errors[:5])
    shown = site.s3.run("models", "show", "demo", "--json")
    assert json.loads(shown.stdout)["version"] == served_version(serving.url("/predict")) == new


def test_sql_reads_a_table_from_s3_and_writes_its_result_there(site, batch):
    result = site.s3.run("sql", "--model", "demo:1", "--table", f"new={site.url('in/new.parquet')}", "--output", site.url("out"),
                         "SELECT customer_id, predict_demo_proba(t).yes AS p_yes FROM new t")
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = site.committed_runs("out/job=sql")
    got = site.read_parquet(f"{run}/result.parquet").to_pylist()
    expected = dict(zip(batch.column("customer_id").to_pylist(), batch.column("proba_yes").to_pylist()))
    assert {r["customer_id"]: r["p_yes"] for r in got} == expected and len(got) == ROWS.num_rows


# --- faults ---------------------------------------------------------------------------------------

def test_the_s3_server_killed_mid_publish_leaves_no_version_and_a_retry_publishes(site, trained):
    cut = trained
    visible = [v for v in cut.after_kill if v not in cut.before]
    record("S3 server SIGKILLed mid-publish (container train)", 1, "runs", "partial versions visible", len(visible))
    assert len(cut.touched) == 2 and "MANIFEST" not in cut.touched, cut.touched  # killed after one whole file
    assert cut.killed.returncode == 4, cut.killed.stderr[-2000:]
    assert last_line(cut.killed.stderr).startswith(
        f"train failed: the model store {site.url('models')} is unreachable at {site.relay.endpoint}")
    assert "Traceback" not in cut.killed.stderr
    assert cut.after_kill == cut.before == ["1"] and "MANIFEST" not in cut.left, (cut.after_kill, cut.left)
    # The retry publishes whole; the cut version's number is not reused if anything of it was left.
    assert site.store().versions("demo") == ["1", cut.published] and int(cut.published) == 2 + bool(cut.left)
    assert site.store().open_version("demo", cut.published).files["MANIFEST"]


def popen(compose: Compose, *args: str) -> subprocess.Popen[str]:
    """`docker compose ...` as Compose runs it, with its stderr streamed."""
    files = [arg for name in compose.files for arg in ("-f", str(REPO / name))]
    return subprocess.Popen(["docker", "compose", "--project-directory", str(REPO), *files, "--profile", "jobs", *args],
                            env=compose.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_the_s3_server_killed_mid_batch_leaves_no_success_and_the_rerun_completes_once(site, trained):
    rows, kill_at = 200_000, 50_000
    site.write_parquet("big/in.parquet", demo.scoring_table(rows=rows, seed=3))
    args = ("predict", "--input", site.url("big/in.parquet"), "--output", site.url("big/out"), "--keep-columns", "customer_id",
            "--chunk-rows", "5000", "--threads", "1")
    job = popen(site.s3, "run", "--rm", "-T", *args)
    assert job.stderr is not None
    seen: list[str] = []
    with brought_back(site.server):
        for line in job.stderr:  # kill the server once the job has scored a quarter of its rows
            seen.append(line)
            if f"scored {kill_at} rows" in line:
                site.server.kill()
                break
        seen += job.stderr.readlines()
        job.stderr.close()
        job.wait(timeout=300)
    committed_before_rerun = site.committed_runs("big/out")
    rerun = site.s3.run(*args)
    committed = site.committed_runs("big/out")
    parts = [k for k in site.objects("big/out") if k.endswith("predictions.parquet")]
    ids = pa.concat_tables([site.read_parquet(k) for k in parts]).column("customer_id") if parts else pa.array([])
    duplicates = len(ids) - len(pc.unique(ids))
    record("S3 server SIGKILLed mid-batch (container predict, S3 in and out)", 1, "runs", "_SUCCESS before the rerun",
           len(committed_before_rerun))
    record("S3 server SIGKILLed mid-batch (container predict, S3 in and out)", rows, "rows", "duplicated after the rerun", duplicates)

    assert job.returncode not in (0, None), "".join(seen)[-2000:]
    assert last_line("".join(seen)).startswith("predict failed: ") and "Traceback" not in "".join(seen), "".join(seen)[-2000:]
    assert committed_before_rerun == []
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(committed) == 1 and len(ids) == rows and duplicates == 0, (committed, parts, len(ids))


def test_one_flipped_byte_in_an_object_of_a_version_is_refused(site, trained):
    """The model itself and its MANIFEST, each in a copy of demo:1 (every file of a version is
    flipped in turn by the in-process tests, tests/unit/test_s3_store.py)."""
    source = "models/demo/1/"
    files = sorted(k[len(source):] for k in site.objects(source.rstrip("/")))
    damaged = ["model.lgb.txt", "MANIFEST"]
    for n, target in enumerate(damaged, start=1):
        for file in files:
            data = bytearray(site.read(source + file))
            if file == target:
                data[len(data) // 2] ^= 0x01
            site.write(f"models/flipped/{n}/{file}", bytes(data))
    outcomes = in_parallel(*(lambda n=n: site.s3.run("predict", "--model", f"flipped:{n}") for n in range(1, len(damaged) + 1)))
    refused = [file for n, (file, r) in enumerate(zip(damaged, outcomes), start=1)
               if r.returncode == 4 and last_line(r.stderr).startswith(f"predict failed: model flipped:{n} is refused")]
    record("one byte flipped in an S3 object (the model; its MANIFEST)", len(damaged), "objects", "refused", len(refused), len(damaged))
    assert set(damaged) <= set(files)
    assert refused == damaged, [r.stderr[-300:] for r in outcomes]


def test_wrong_credentials_or_an_unreachable_endpoint_is_one_line_naming_the_store(site, trained):
    store = site.url("models")
    dead_endpoint = f"http://{docker_gateway()}:{closed_port(docker_gateway())}"
    denied, unreachable = in_parallel(lambda: with_env(site.s3, AWS_SECRET_ACCESS_KEY="not-the-secret").run("predict"),
                                      lambda: with_env(site.s3, AWS_ENDPOINT_URL=dead_endpoint).run("models", "list"))
    clear = [
        denied.returncode == 2
        and last_line(denied.stderr).startswith(f"predict failed: the model store {store} refused the credentials"),
        unreachable.returncode == 4
        and last_line(unreachable.stderr).startswith(f"models failed: the model store {store} is unreachable at {dead_endpoint}"),
    ]
    tracebacks = sum("Traceback" in r.stderr for r in (denied, unreachable))
    record("wrong S3 credentials / unreachable endpoint (containers)", 2, "runs", "tracebacks or unclear errors",
           tracebacks + clear.count(False))
    assert all(clear), (denied.returncode, denied.stderr[-500:], unreachable.returncode, unreachable.stderr[-500:])
    assert tracebacks == 0


def follow_errors(url: str) -> float:
    text = requests.get(url, timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("mljobs_model_follow_errors_total"))


def wait_for_answer(url: str, deadline_s: float = 90) -> requests.Response:
    end = time.monotonic() + deadline_s
    while True:
        try:
            return requests.get(url, timeout=5)
        except requests.RequestException:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


def test_a_replica_whose_store_goes_away_keeps_serving_and_one_without_a_model_is_not_ready(site, serving):
    version = served_version(serving.url("/predict"))
    with brought_back(site.server):
        with Load(serving.url("/predict"), threads=2) as load:
            site.server.kill()
            deadline = time.monotonic() + 30
            while follow_errors(serving.url("/metrics")) == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            noticed = follow_errors(serving.url("/metrics")) > 0
            still_ready = requests.get(serving.url("/health"), timeout=5)
            started = serving("run", "-d", "serve")
            assert started.returncode == 0, started.stderr[-2000:]
            newcomer = started.stdout.strip().splitlines()[-1]
            empty = wait_for_answer(serving.replica_url("/health", newcomer))
    record("serve replica with its S3 store down: requests to it", load.sent, "requests", "failed", load.failures())
    record("serve replica with its S3 store down: a new replica with no model", 1, "replicas", "reported ready",
           int(empty.status_code == 200))

    assert noticed and still_ready.status_code == 200 and still_ready.json()["status"] == "ready"
    assert load.failures() == 0 and load.sent > 0 and {v for _, v in load.versions} == {version}, (load.statuses, load.errors[:5])
    assert empty.status_code == 503 and empty.json()["status"] == "no_model", empty.text
    assert "unreachable" in empty.json()["reason"]
    serving.wait_ready("/health", url=serving.replica_url("/health", newcomer))  # the store is back: it loads and is ready
