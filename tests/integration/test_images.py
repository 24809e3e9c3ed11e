"""The images themselves: each Python image carries what its role imports and nothing serving never
imports, the three share their dependency layer, and the load balancer's health check passes.

The jobs run for real in their images (train signed LightGBM and scikit-learn models, list them,
predict, SQL); the serve image answers every protocol in-process for each kind of model while the
test records which installed distributions were imported."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.fault_table import record
from tests.integration.conftest import image

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PYTHON_ROLES = ("train", "predict", "serve")
KEY = "0123456789abcdef" * 4
TOKEN = secrets.token_hex(4)
LABEL = f"org.mljobs.test=images-{TOKEN}"
MB = 1e6


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_in(role: str, *args: str, key: str = KEY, entrypoint: str | None = None, mounts: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """One locked-down container of `role`'s image on the test's model store (as compose runs them)."""
    return docker("run", "--rm", "--label", LABEL, "--user", "10001:10001", "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/runs:mode=1777", "--cap-drop", "ALL",
                  "--security-opt", "no-new-privileges:true", "--network", "none", "-e", f"MLJOBS_SIGNING_KEY={key}",
                  "-v", f"mljobs-images-{TOKEN}:/models", *mounts,
                  *(["--entrypoint", entrypoint] if entrypoint else []), image(role), *args)


@pytest.fixture(scope="module")
def store(built_images):
    """A model store volume holding `demo` (LightGBM, signed: compiled predictor too) and `forest`
    (scikit-learn), trained by the train image."""
    created = docker("volume", "create", "--label", LABEL, f"mljobs-images-{TOKEN}")
    assert created.returncode == 0, created.stderr
    try:
        for args in ((), ("--model", "forest", "--estimator", "sklearn.ensemble.RandomForestClassifier")):
            trained = run_in("train", *args)
            assert trained.returncode == 0, trained.stderr[-3000:]
        yield
    finally:
        for kind in ("container", "volume"):
            found = docker(kind, "ls", "-aq" if kind == "container" else "-q", "--filter", f"label={LABEL}").stdout.split()
            if found:
                docker(kind, "rm", "-f", *found)


# Serving, in-process: every protocol for each kind of model (compiled LightGBM and scikit-learn
# with the key, LightGBM's text model without), as gunicorn's entry point imports it; then which
# installed distributions were imported.
SERVE_PROBE = """
import json, os, sys
from importlib import metadata
import gunicorn.app.wsgiapp, prometheus_client.multiprocess
from mljobs.serve.app import create_app
row = {"age": 42, "tenure_months": 3, "monthly_charges": 80.5, "plan": "basic", "region": "north", "has_support": False}
csv = "age,tenure_months,monthly_charges,plan,region,has_support\\n42,3,80.5,basic,north,false\\n"
statuses = {}
for model, key in (("demo", os.environ["MLJOBS_SIGNING_KEY"]), ("forest", os.environ["MLJOBS_SIGNING_KEY"]), ("demo", "")):
    os.environ["MLJOBS_SIGNING_KEY"] = key
    client = create_app({"MODEL": model}).test_client()
    replies = [client.get("/v2/health/ready"), client.post("/predict", json=[row, {**row, "age": "x"}]),
               client.post("/invocations", json={"dataframe_records": [row]}),
               client.post("/invocations", data=csv, content_type="text/csv"),
               client.post(f"/v2/models/{model}/infer", json={"inputs": [
                   {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "BOOL" if isinstance(v, bool) else "FP64", "data": [v]}
                   for k, v in row.items()]}),
               client.get("/metrics"), client.get("/openapi.json")]
    statuses[f"{model} key={bool(key)}"] = [r.status_code for r in replies]
owners = metadata.packages_distributions()
imported = {d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])}
print(json.dumps({"statuses": statuses, "imported": sorted(imported),
                  "installed": sorted(d.metadata["Name"] for d in metadata.distributions())}))
"""


def test_the_serve_image_holds_only_what_serving_imports(store):
    probe = run_in("serve", "-c", SERVE_PROBE, entrypoint="python")
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.splitlines()[-1])
    for model, statuses in found["statuses"].items():
        assert statuses == [200, 422, 200, 200, 200, 200, 200], (model, statuses)
    installed = set(found["installed"])
    assert installed - set(found["imported"]) == set(), "installed in the serve image, never imported by serving"
    assert {"matplotlib", "duckdb", "pip", "setuptools", "pandas", "PyYAML"} & installed == set()


def test_no_python_image_carries_pip(built_images):
    for role in PYTHON_ROLES:
        result = docker("run", "--rm", "--entrypoint", "python", image(role), "-m", "pip", "--version")
        assert result.returncode != 0 and "No module named pip" in result.stderr, (role, result.stdout)


@pytest.mark.parametrize("role, modules", [
    ("train", "mljobs.jobs.train, mljobs.jobs.models, mljobs.report, matplotlib.pyplot, lleaves, lightgbm, skops.io, sklearn.ensemble, yaml"),
    ("predict", "mljobs.jobs.predict, mljobs.jobs.sql, mljobs.sql.duckdb_udf, duckdb, lleaves, lightgbm, skops.io, sklearn.ensemble, yaml"),
])
def test_the_job_images_import_what_their_roles_need(built_images, role, modules):
    result = docker("run", "--rm", "--entrypoint", "python", image(role), "-c", f"import {modules}")
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_job_images_run_their_roles(store):
    listed = run_in("train", "-m", "mljobs.jobs.models", "list", entrypoint="python")
    assert listed.returncode == 0 and "demo" in listed.stdout and "forest" in listed.stdout, listed.stderr[-2000:]
    output = ("--tmpfs", "/data/output:uid=10001,gid=10001")
    predicted = run_in("predict", "--proba", mounts=output)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert "wrote 1000 predictions" in predicted.stderr
    query = "SELECT customer_id, predict_demo(t) AS d, predict_forest(t) AS f FROM '/data/input/new.csv' t"
    queried = run_in("predict", "-m", "mljobs.jobs.sql", query, entrypoint="python",
                     mounts=(*output, "-v", f"{REPO / 'data' / 'input'}:/data/input:ro"))
    assert queried.returncode == 0, queried.stderr[-2000:]
    assert "wrote 1000 rows" in queried.stderr


def layers(name: str) -> list[str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", name).stdout)


def history(name: str) -> list[tuple[str, int]]:
    """(instruction, bytes) of each build step, base first."""
    out = docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", name).stdout
    return [(created_by, int(size)) for size, created_by in (line.split("\t", 1) for line in reversed(out.splitlines()))]


def common_prefix(sequences: list[list]) -> list:
    prefix = []
    for items in zip(*sequences):
        if any(item != items[0] for item in items):
            break
        prefix.append(items[0])
    return prefix


def test_the_python_images_share_their_dependency_layer(built_images):
    shared_layers = common_prefix([layers(image(role)) for role in PYTHON_ROLES])
    steps = {role: history(image(role)) for role in PYTHON_ROLES}
    shared_steps = common_prefix(list(steps.values()))
    assert any("pip install" in step for step, _ in shared_steps), "the dependency layer is not shared"
    # The same steps are the same layers (one download), not copies built alike.
    assert len(shared_layers) >= sum(1 for _, size in shared_steps if size > 0), "alike steps, different layers"
    # The base image's steps: those before our first one (the libgomp1 install).
    base = sum(size for _, size in shared_steps[:next(i for i, (step, _) in enumerate(shared_steps) if "libgomp1" in step)])
    sizes = {role: sum(size for _, size in s) for role, s in steps.items()}
    shared = sum(size for _, size in shared_steps)
    for role in PYTHON_ROLES:
        # The shared layers are most of what each image adds to its base.
        assert shared - base >= 0.75 * (sizes[role] - base), (role, sizes, shared)
    sizes["lb"] = sum(size for _, size in history(image("lb")))
    print(f"\nimage sizes: {', '.join(f'{r} {s / MB:.0f} MB' for r, s in sizes.items())}; "
          f"{len(shared_layers)} layers ({shared / MB:.0f} MB, base {base / MB:.0f} MB) shared by train, predict, serve")
    for role, size in sizes.items():
        record(f"image size: mljobs-{role}", 1, "image", "MB", round(size / MB), None)
    record("layers shared by mljobs-train, -predict, -serve", 3, "images", "MB", round(shared / MB), None)


def test_the_load_balancer_becomes_healthy(built_images):
    """nginx alone on a network of its own (it resolves `serve` only when a request needs it)."""
    network, name = f"mljobs-images-{TOKEN}", f"mljobs-images-lb-{TOKEN}"
    assert docker("network", "create", "--label", LABEL, network).returncode == 0
    try:
        started = docker("run", "-d", "--name", name, "--label", LABEL, "--network", network, "--read-only",
                         "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", image("lb"))
        assert started.returncode == 0, started.stderr
        deadline, status = time.monotonic() + 45, ""
        while time.monotonic() < deadline and status != "healthy":
            time.sleep(1)
            status = docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
        log = docker("inspect", "--format", "{{json .State.Health.Log}}", name).stdout
        assert status == "healthy", f"lb is {status!r} after 45 s: {log[-1500:]}"
    finally:
        docker("rm", "-f", name)
        docker("network", "rm", network)


def test_a_cpu_limit_sizes_the_threads_and_the_workers(built_images):
    """Under `--cpus 1`, the jobs' thread pools and gunicorn's workers are sized to the one CPU the
    container may use, not to the CPUs it may run on."""
    cpus = "import os; from mljobs.cpus import usable_cpus; print(usable_cpus(), len(os.sched_getaffinity(0)))"
    workers = "import runpy; print(runpy.run_path('/etc/mljobs/gunicorn.conf.py')['workers'])"
    limited = docker("run", "--rm", "--cpus", "1", "--entrypoint", "python", image("predict"), "-c", cpus)
    assert limited.returncode == 0 and limited.stdout.split()[0] == "1", (limited.stdout, limited.stderr[-2000:])
    served = docker("run", "--rm", "--cpus", "1", "--entrypoint", "python", image("serve"), "-c", workers)
    assert served.returncode == 0 and served.stdout.split()[-1] == "1", (served.stdout, served.stderr[-2000:])
    free = docker("run", "--rm", "--entrypoint", "python", image("predict"), "-c", cpus)
    usable, affinity = free.stdout.split()
    assert usable == affinity, free.stdout  # no limit: every CPU it may run on
