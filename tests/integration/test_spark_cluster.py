"""The Spark path on a real Spark standalone cluster (issue #13, part 4).

A master and two workers (1 core each) run as processes started from the pyspark package's own
`bin/spark-class`, on the loopback, each with its own ports and temp folders; this process is the
driver. The demo model is trained in-process into a local store folder. spark_udf reads and
verifies the version from the store on the driver and ships the verified bytes to the executors
(a zip, with SparkContext.addArchive), where each executor verifies them again before scoring;
it has no variant in which the executors open the store themselves, so there is none to test.

The same rows go through both of spark_udf's forms — its pandas UDFs under Spark SQL, and
score_dataframe's mapInPandas — in 8 partitions. Each test proves that both workers' executors
ran tasks of the scoring stage (the driver's REST API names each task's executor, each worker's
JSON the executor it launched), that each of them received the model (its unpacked copy holds the
store's MANIFEST), and that the predictions and probabilities equal the batch job's exactly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests

from mljobs import demo
from mljobs.jobs import predict, train

from .conftest import free_port

pytestmark = pytest.mark.integration

ROWS = 4000
PARTITIONS = 8
START_DEADLINE_S = 90.0
# Short-lived JVMs on a busy machine start faster with the quick JIT tier and the serial collector.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def log(message: str) -> None:
    print(f"[spark-cluster] {message}", flush=True)


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = START_DEADLINE_S,
             on_timeout: Callable[[], str] = lambda: "") -> Any:
    """check()'s first truthy value, polled until the deadline (connection errors count as not yet)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            value = check()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} not after {deadline_s:.0f} s\n{on_timeout()}")


def get_json(url: str) -> Any:
    return requests.get(url, timeout=5).json()


# ---- processes: started in their own session, ended by process group and by pid ----------------


def child_pids() -> dict[int, list[int]]:
    """Every live process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # the command name may hold spaces
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    tree, todo, children = [], [pid], child_pids()
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


@dataclass
class Daemon:
    """A Spark master or worker JVM (spark-class execs java, so the pid is the JVM's)."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path

    def log_tail(self) -> str:
        return f"--- {self.name} log ---\n" + self.log_file.read_text(errors="replace")[-3000:]

    def stop(self) -> list[int]:
        """SIGTERM to its process group, SIGKILL to what is left of the group and of its process
        tree (pyspark's Python daemons make groups of their own); returns the pids still running."""
        tree = process_tree(self.process.pid)
        for sig, grace_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.process.pid, sig)  # its own session: group id == pid
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=grace_s)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid in tree:
            if pid != self.process.pid and running(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + 10
        while time.monotonic() < end and any(running(pid) for pid in tree):
            time.sleep(0.2)
        return [pid for pid in tree if running(pid)]


@dataclass
class Worker:
    daemon: Daemon
    ui_port: int
    work_dir: Path
    local_dir: Path

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def executor_ids(self, app_id: str) -> set[str]:
        """The executors this worker launched for the application (its own JSON says so)."""
        state = get_json(f"{self.ui}/json/")
        return {str(e["id"]) for e in state["executors"] if e["appid"] == app_id}


@dataclass
class StandaloneCluster:
    root: Path
    spark_home: Path
    master_port: int = field(default_factory=free_port)
    master_ui_port: int = field(default_factory=free_port)
    master: Daemon | None = None
    workers: list[Worker] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def master_ui(self) -> str:
        return f"http://127.0.0.1:{self.master_ui_port}"

    def env(self, **extra: str) -> dict[str, str]:
        conf_dir = self.root / "conf"  # empty: no spark-env.sh or defaults from the machine
        conf_dir.mkdir(exist_ok=True)
        return {
            **os.environ,
            "SPARK_HOME": str(self.spark_home),
            "SPARK_CONF_DIR": str(conf_dir),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": "512m",
            "SPARK_DAEMON_JAVA_OPTS": QUICK_JVM,
            # The executors' Python workers need this environment's packages (mljobs among them).
            "PYSPARK_PYTHON": sys.executable,
            **extra,
        }

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Daemon:
        log_file = self.root / f"{name}.log"
        with log_file.open("wb") as out:
            process = subprocess.Popen(
                [str(self.spark_home / "bin" / "spark-class"), *args], env=env, cwd=self.root,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return Daemon(name, process, log_file)

    def alive_workers(self) -> list[dict[str, Any]]:
        return [w for w in get_json(f"{self.master_ui}/json/")["workers"] if w["state"] == "ALIVE"]

    def start(self, workers: int = 2) -> None:
        """The master, up; then the workers, started (wait_for_workers() waits for them)."""
        self.master = self.spawn("master", [
            "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
            "--port", str(self.master_port), "--webui-port", str(self.master_ui_port),
        ], self.env())
        wait_for("the master up", lambda: get_json(f"{self.master_ui}/json/")["status"] == "ALIVE",
                 on_timeout=self.master.log_tail)
        for i in range(workers):
            ui_port, work_dir, local_dir = free_port(), self.root / f"worker{i}" / "work", self.root / f"worker{i}" / "local"
            work_dir.mkdir(parents=True)
            local_dir.mkdir()
            daemon = self.spawn(f"worker{i}", [
                "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1", "--cores", "1",
                "--memory", "1g", "--webui-port", str(ui_port), "--work-dir", str(work_dir),
            ], self.env(SPARK_LOCAL_DIRS=str(local_dir)))  # the executors' scratch space
            self.workers.append(Worker(daemon, ui_port, work_dir, local_dir))

    def wait_for_workers(self) -> None:
        wait_for(f"{len(self.workers)} workers registered", lambda: len(self.alive_workers()) == len(self.workers),
                 on_timeout=self.logs)

    def logs(self) -> str:
        return "\n".join(d.log_tail() for d in self.daemons())

    def daemons(self) -> list[Daemon]:
        return [w.daemon for w in self.workers] + ([self.master] if self.master else [])

    def stop(self) -> list[int]:
        """Workers first (they end their executors), then the master; the pids left running."""
        return [pid for daemon in self.daemons() for pid in daemon.stop()]


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """One temp folder for the cluster, the store, the data and the driver; removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="mljobs-spark-cluster-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def store(scratch: Path) -> Path:
    """demo:1 trained in-process into a local store folder."""
    root = scratch / "store"
    started = time.monotonic()
    assert train.main(["--models-dir", str(root / "models"), "--runs-dir", str(root / "runs")]) == 0
    log(f"trained demo:1 in {time.monotonic() - started:.1f} s")
    return root


@pytest.fixture(scope="module")
def rows(scratch: Path) -> Path:
    path = scratch / "data" / "new.parquet"
    path.parent.mkdir()
    pq.write_table(demo.scoring_table(rows=ROWS, seed=41), path)
    return path


@pytest.fixture(scope="module")
def batch(store: Path, rows: Path, scratch: Path) -> dict[str, tuple[str, float]]:
    """The batch job's (prediction, proba_yes) per customer, in-process, for the same rows."""
    out = scratch / "batch"
    assert predict.main(["--models-dir", str(store / "models"), "--runs-dir", str(store / "runs"), "--output", str(out),
                         "--input", str(rows), "--keep-columns", "customer_id", "--proba"]) == 0
    [part] = out.glob("model=demo/date=*/run=*/predictions.parquet")
    scored = {r["customer_id"]: (r["prediction"], r["proba_yes"]) for r in pq.read_table(part).to_pylist()}
    assert len(scored) == ROWS  # one row per customer, so rows compare by customer_id
    return scored


@pytest.fixture(scope="module")
def cluster(scratch: Path) -> Iterator[StandaloneCluster]:
    import pyspark

    started = time.monotonic()
    cluster = StandaloneCluster(scratch / "cluster", Path(pyspark.__file__).parent)
    cluster.root.mkdir()
    try:
        cluster.start(workers=2)  # the driver starts while the workers register
        log(f"master up, 2 workers starting, in {time.monotonic() - started:.1f} s")
        yield cluster
    finally:
        started = time.monotonic()
        left = cluster.stop()
        log(f"cluster stopped in {time.monotonic() - started:.1f} s")
        assert not left, f"processes still running after teardown: {left}"


@dataclass
class Driver:
    spark: Any
    app_id: str
    ui: str

    def executors(self) -> dict[str, dict[str, Any]]:
        """The application's executors (the driver left out), by id, from Spark's REST API."""
        found = get_json(f"{self.ui}/api/v1/applications/{self.app_id}/executors")
        return {e["id"]: e for e in found if e["id"] != "driver"}

    def task_executors(self, group: str) -> list[str]:
        """The executor of every successful task of the job group's stages that have a task per
        partition (the scoring stages), once its jobs are all done (the REST API lags a little)."""
        base = f"{self.ui}/api/v1/applications/{self.app_id}"
        jobs = [j for j in get_json(f"{base}/jobs") if j.get("jobGroup") == group]
        if not jobs or any(j["status"] != "SUCCEEDED" for j in jobs):
            return []
        executors = []
        for stage_id in sorted({s for j in jobs for s in j["stageIds"]}):
            for attempt in get_json(f"{base}/stages/{stage_id}"):
                if attempt["status"] == "COMPLETE" and attempt["numTasks"] >= PARTITIONS:
                    tasks = get_json(f"{base}/stages/{stage_id}/{attempt['attemptId']}/taskList?length=10000")
                    executors += [t["executorId"] for t in tasks if t["status"] == "SUCCESS"]
        return executors


@pytest.fixture(scope="module")
def driver(cluster: StandaloneCluster, scratch: Path) -> Iterator[Driver]:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    assert SparkSession.getActiveSession() is None, "another SparkSession is still running in this process"
    own_gateway = SparkContext._gateway is None
    saved_env = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")}
    os.environ.update(PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    (scratch / "driver").mkdir()
    started = time.monotonic()
    spark = (
        SparkSession.builder.master(cluster.url).appName("mljobs-spark-cluster-test")
        .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "true").config("spark.ui.port", str(free_port()))
        .config("spark.local.dir", str(scratch / "driver"))
        .config("spark.driver.extraJavaOptions", QUICK_JVM).config("spark.executor.extraJavaOptions", QUICK_JVM)
        .config("spark.executor.cores", "1").config("spark.cores.max", "2").config("spark.executor.memory", "512m")
        # No job before both executors are registered, so both get tasks from the first one.
        .config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
        .config("spark.scheduler.maxRegisteredResourcesWaitingTime", "60s")
        .config("spark.sql.adaptive.enabled", "false")  # keep exactly the partitions asked for
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    try:
        spark.sparkContext.setLogLevel("ERROR")
        assert spark.sparkContext.master == cluster.url
        ui = spark.sparkContext.uiWebUrl
        assert ui, "the driver's UI (and so its REST API) is off"
        session = Driver(spark, spark.sparkContext.applicationId, ui.rstrip("/"))
        cluster.wait_for_workers()
        log(f"driver up and 2 workers registered in {time.monotonic() - started:.1f} s")
        wait_for("2 executors registered", lambda: len(session.executors()) == 2, on_timeout=cluster.logs)
        log(f"application {session.app_id} has its 2 executors after {time.monotonic() - started:.1f} s")
        yield session
    finally:
        gateway = SparkContext._gateway
        spark.stop()
        if own_gateway and gateway is not None:  # the driver's JVM ends when its stdin closes
            gateway.shutdown()
            gateway.proc.stdin.close()
            try:
                gateway.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                gateway.proc.kill()
                gateway.proc.wait()
            SparkContext._gateway, SparkContext._jvm = None, None
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---- the tests --------------------------------------------------------------------------------


def assert_ran_on_both_workers(cluster: StandaloneCluster, driver: Driver, group: str) -> None:
    """Each worker launched one executor for the application (its JSON and its work dir say so),
    and both executors ran tasks of the job group's scoring stage, one task per partition."""
    per_worker = [w.executor_ids(driver.app_id) for w in cluster.workers]
    executors = wait_for(f"the tasks of {group} in the REST API", lambda: driver.task_executors(group), 15)
    counts = {e: executors.count(e) for e in sorted(set(executors))}
    log(f"{group}: scoring tasks per executor {counts}; executors per worker {[sorted(ids) for ids in per_worker]}")
    assert all(len(ids) == 1 for ids in per_worker) and per_worker[0] != per_worker[1]
    for worker, ids in zip(cluster.workers, per_worker):
        [executor] = ids
        assert counts.get(executor, 0) > 0, f"the executor on {worker.ui} ran no scoring task"
        assert (worker.work_dir / driver.app_id / executor / "stderr").is_file()  # its log, under its work dir
    assert len(executors) >= PARTITIONS


def assert_model_shipped_to_both_workers(cluster: StandaloneCluster, store: Path) -> None:
    """Each worker's executor holds demo:1's files, unpacked from the archive the driver shipped
    into its working folder (an executor's SparkFiles root), with the store's MANIFEST."""
    manifest = (store / "models" / "demo" / "1" / "MANIFEST").read_text()
    for worker in cluster.workers:
        copies = [p for p in worker.work_dir.glob("app-*/*/mljobs-demo-1-*.zip") if p.is_dir()]
        assert copies, f"no shipped model under {worker.work_dir}"
        assert {(p / "MANIFEST").read_text() for p in copies} == {manifest}


def partitioned(driver: Driver, rows: Path) -> Any:
    df = driver.spark.read.parquet(str(rows)).repartition(PARTITIONS)
    assert df.rdd.getNumPartitions() >= PARTITIONS
    return df


def test_spark_sql_udfs_on_two_workers_equal_the_batch_job(cluster, driver, store, rows, batch):
    from mljobs.sql.spark_udf import prediction_udf

    spark = driver.spark
    partitioned(driver, rows).createOrReplaceTempView("new")
    spark.udf.register("predict_demo", prediction_udf(spark, store / "models", "demo"))
    spark.udf.register("predict_demo_proba", prediction_udf(spark, store / "models", "demo", proba=True))
    spark.sparkContext.setJobGroup("udf", "pandas UDFs under Spark SQL")
    started = time.monotonic()
    result = spark.sql("SELECT customer_id, predict_demo(struct(*)) AS churn, "
                       "predict_demo_proba(struct(*)).yes AS p_yes FROM new").collect()
    log(f"pandas UDFs: {len(result)} rows in {PARTITIONS} partitions in {time.monotonic() - started:.1f} s")

    assert len(result) == ROWS
    assert {r["customer_id"]: (r["churn"], r["p_yes"]) for r in result} == batch
    assert_ran_on_both_workers(cluster, driver, "udf")
    assert_model_shipped_to_both_workers(cluster, store)


def test_score_dataframe_on_two_workers_equals_the_batch_job(cluster, driver, store, rows, batch):
    from mljobs.sql.spark_udf import score_dataframe

    scored = score_dataframe(partitioned(driver, rows), driver.spark, store / "models", "demo")
    assert scored.rdd.getNumPartitions() >= PARTITIONS
    driver.spark.sparkContext.setJobGroup("map-in-pandas", "score_dataframe")
    started = time.monotonic()
    result = scored.select("customer_id", "prediction", "proba_yes").collect()
    log(f"mapInPandas: {len(result)} rows in {PARTITIONS} partitions in {time.monotonic() - started:.1f} s")

    assert len(result) == ROWS
    assert {r["customer_id"]: (r["prediction"], r["proba_yes"]) for r in result} == batch
    assert_ran_on_both_workers(cluster, driver, "map-in-pandas")
    assert_model_shipped_to_both_workers(cluster, store)
