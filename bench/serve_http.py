"""HTTP scoring throughput and latency with wrk on 127.0.0.1, one record per request, side by
side in one run:

  - mljobs serve, one replica (gunicorn, the serve image's config), direct
  - mljobs fleet: replicas in containers behind the nginx load balancer (docker compose)
  - a minimal Flask + gunicorn app doing only JSON -> numpy -> booster.predict: the ceiling
  - `mlflow models serve` on the same booster
  - the Open Inference Protocol (v2) on the same replica: one [1, F] tensor as JSON, and with the
    binary tensor extension (tritonclient's default)
  - MLServer's LightGBM runtime on the same booster (in-process workers), v2 JSON

    .venv/bin/python bench/serve_http.py [--seconds 10] [--skip-mlflow] [--skip-mlserver] [--skip-fleet]

Needs wrk (apt-get install wrk). Targets (issue 5): at least 20x MLflow's req/s at c=16, at
least 90% of the minimal app's req/s, p50 under 1 ms at c=1. wrk shares the two cores with the
servers, so read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import requests

sys.path.insert(0, str(Path(__file__).parent))
from common import MLFLOW_PACKAGES, cached_venv, numeric_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

MINIMAL_APP = '''
import json, os, numpy as np, lightgbm
from flask import Flask, request, Response
booster = lightgbm.Booster(model_file=os.environ["MODEL_FILE"])
names = booster.feature_name()
app = Flask(__name__)
@app.post("/predict")
def predict():
    record = json.loads(request.get_data())
    row = np.array([[float("nan") if record[n] is None else float(record[n]) for n in names]])
    return Response(json.dumps({"prediction": float(booster.predict(row, num_threads=1)[0])}), mimetype="application/json")
'''

# The body comes from a file: it may be binary (the v2 binary tensor extension).
WRK_SCRIPT = '''
wrk.method = "POST"
local f = io.open("{body_file}", "rb")
wrk.body = f:read("*a")
f:close()
{headers}
'''
JSON = {"Content-Type": "application/json"}
MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-lightgbm==1.7.1", "lightgbm==4.7.0", "pandas==2.3.3"]


@dataclass(frozen=True)
class Target:
    url: str
    body: bytes
    health: str  # "" for none
    headers: dict[str, str]


def v2_bodies(values: list[float]) -> tuple[bytes, bytes, dict[str, str]]:
    """One [1, F] FP64 tensor: as JSON, and as the binary extension (JSON header, then the raw
    little-endian values; binary outputs asked for) with its headers."""
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [1, len(values)]}
    as_json = json.dumps({"inputs": [{**tensor, "data": values}]}).encode()
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": 8 * len(values)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    binary = header + struct.pack(f"<{len(values)}d", *values)
    return as_json, binary, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, deadline_s: float = 90) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} never answered")


def wrk(target: Target, connections: int, seconds: int, work: Path) -> dict[str, float]:
    token = secrets.token_hex(3)
    body_file, script = work / f"body-{token}.bin", work / f"post-{token}.lua"
    body_file.write_bytes(target.body)
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items())
    script.write_text(WRK_SCRIPT.format(body_file=body_file, headers=headers))
    url = target.url
    result = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                            capture_output=True, text=True, check=True).stdout
    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", result, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", result).group(1)), "p50": latency("50"),
            "p99": latency("99"), "non2xx": int(non_2xx.group(1)) if non_2xx else 0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument("--skip-fleet", action="store_true")
    args = parser.parse_args()
    processes: list[subprocess.Popen] = []
    compose_env = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            pq.write_table(numeric_table(50_000, seed=1), work / "train.parquet")
            subprocess.run([sys.executable, "-m", "mljobs.jobs.train", "--input", str(work / "train.parquet"), "--target", "label",
                            "--model", "bench", "--params", '{"num_leaves": 63}', "--models-dir", str(work / "models"),
                            "--runs-dir", str(work / "runs"), "--log-level", "WARNING"], check=True, stdout=subprocess.DEVNULL)
            booster = work / "models" / "bench" / "1" / "model.lgb.txt"
            record = numeric_table(1, seed=9).drop_columns(["label"]).to_pylist()[0]
            body = json.dumps(record).encode()
            v2_json, v2_binary, binary_headers = v2_bodies([float(v) for v in record.values()])
            targets: dict[str, Target] = {}

            port = free_port()
            env = {**os.environ, "MLJOBS_MODELS_DIR": str(work / "models"), "MLJOBS_MODEL": "bench", "MLJOBS_WORKERS": "2",
                   "MLJOBS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")}
            processes.append(subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "images/serve/gunicorn.conf.py"),
                                               "mljobs.serve.app:create_app()"], env=env, stderr=subprocess.DEVNULL))
            replica = f"http://127.0.0.1:{port}"
            targets["mljobs, one replica"] = Target(f"{replica}/predict", body, f"{replica}/ping", JSON)
            targets["mljobs v2, JSON [1, F]"] = Target(f"{replica}/v2/models/bench/infer", v2_json, f"{replica}/ping", JSON)
            targets["mljobs v2, binary [1, F]"] = Target(f"{replica}/v2/models/bench/infer", v2_binary, f"{replica}/ping", binary_headers)

            port = free_port()
            (work / "minimal.py").write_text(MINIMAL_APP)
            processes.append(subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
                                               "--chdir", str(work), "minimal:app"], env={**os.environ, "MODEL_FILE": str(booster)},
                                              stderr=subprocess.DEVNULL))
            targets["minimal Flask app (ceiling)"] = Target(f"http://127.0.0.1:{port}/predict", body, "", JSON)

            if not args.skip_mlflow:
                python = cached_venv("mlflow", MLFLOW_PACKAGES)
                subprocess.run([str(python), "-c", "import sys, lightgbm, mlflow.lightgbm; mlflow.lightgbm.save_model("
                                "lightgbm.Booster(model_file=sys.argv[1]), sys.argv[2])", str(booster), str(work / "mlflow-model")], check=True)
                port = free_port()
                processes.append(subprocess.Popen([str(python.parent / "mlflow"), "models", "serve", "-m", str(work / "mlflow-model"),
                                                   "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "--workers", "2"],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                  env={**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}"}))  # its uvicorn
                targets["mlflow models serve"] = Target(f"http://127.0.0.1:{port}/invocations",
                                                        json.dumps({"dataframe_records": [record]}).encode(), f"http://127.0.0.1:{port}/ping", JSON)

            if not args.skip_mlserver:
                python = cached_venv("mlserver-lightgbm", MLSERVER_PACKAGES)
                folder, port = work / "mlserver", free_port()
                folder.mkdir()
                (folder / "model.txt").write_bytes(booster.read_bytes())
                # In-process workers (parallel_workers 0), as the issue asks; its own ports, no metrics server.
                (folder / "settings.json").write_text(json.dumps({"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
                                                                  "parallel_workers": 0, "metrics_endpoint": None}))
                (folder / "model-settings.json").write_text(json.dumps({
                    "name": "bench", "implementation": "mlserver_lightgbm.LightGBMModel", "parameters": {"uri": "./model.txt"}}))
                processes.append(subprocess.Popen([str(python.parent / "mlserver"), "start", str(folder)], cwd=folder,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                  env={**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}"}))
                mlserver = f"http://127.0.0.1:{port}"
                targets["MLServer LightGBM runtime, v2 JSON"] = Target(f"{mlserver}/v2/models/bench/infer", v2_json,
                                                                       f"{mlserver}/v2/health/ready", JSON)

            if not args.skip_fleet:
                compose_env = {**os.environ, "COMPOSE_PROJECT_NAME": f"mljobs-bench-{secrets.token_hex(3)}",
                               "MLJOBS_PORT": str(free_port()), "MLJOBS_LB_PORT": str(free_port()), "MLJOBS_WORKERS": "1",
                               "MLJOBS_MODEL": "bench", "MLJOBS_DATA_DIR": str(work / "data")}
                (work / "data" / "input").mkdir(parents=True)
                (work / "data" / "output").mkdir()
                (work / "data" / "input" / "train.parquet").write_bytes((work / "train.parquet").read_bytes())
                # The fleet's override file: replicas unpublished, reached through nginx only.
                compose = ["docker", "compose", "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
                           "-f", str(REPO / "compose.fleet.yaml"), "--profile", "jobs"]
                subprocess.run([*compose, "run", "--rm", "-T", "train", "--input", "/data/input/train.parquet", "--target", "label",
                                "--model", "bench", "--params", '{"num_leaves": 63}'], env=compose_env, check=True, capture_output=True)
                subprocess.run([*compose, "up", "-d", "--scale", "serve=2", "serve", "lb"], env=compose_env, check=True, capture_output=True)
                lb = f"http://127.0.0.1:{compose_env['MLJOBS_LB_PORT']}"
                targets["mljobs fleet via nginx (2 replicas)"] = Target(f"{lb}/predict", body, f"{lb}/ping", JSON)

            for target in targets.values():
                if target.health:
                    wait_up(target.health, 120)
                else:
                    time.sleep(3)  # the minimal app has no health route
                requests.post(target.url, data=target.body, headers=target.headers, timeout=10).raise_for_status()

            results = {name: {c: wrk(target, c, args.seconds, work) for c in (1, 16)} for name, target in targets.items()}
        finally:
            for p in processes:
                p.terminate()
            for p in processes:
                p.wait(15)
            if compose_env:
                subprocess.run(["docker", "compose", "--project-directory", str(REPO), "--profile", "jobs", "down", "-v",
                                "--remove-orphans"], env=compose_env, capture_output=True)

    print(f"\nHTTP scoring, one record per request, wrk {args.seconds} s, 127.0.0.1, {os.cpu_count()} cores")
    print(f"  {'server':<36}{'c=16 req/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'c=1 req/s':>11}{'p50 ms':>9}{'non-2xx':>9}")
    for name, r in results.items():
        print(f"  {name:<36}{r[16]['rps']:>12,.0f}{r[16]['p50']:>9.2f}{r[16]['p99']:>9.2f}{r[1]['rps']:>11,.0f}"
              f"{r[1]['p50']:>9.2f}{r[16]['non2xx'] + r[1]['non2xx']:>9}")
    ours, ceiling = results["mljobs, one replica"], results["minimal Flask app (ceiling)"]
    print(f"  mljobs / minimal app at c=16: {ours[16]['rps'] / ceiling[16]['rps']:.0%} (target: at least 90%)")
    if "mlflow models serve" in results:
        print(f"  mljobs / mlflow at c=16: {ours[16]['rps'] / results['mlflow models serve'][16]['rps']:.1f}x (target: at least 20x)")
    print(f"  mljobs p50 at c=1: {ours[1]['p50']:.2f} ms (target: under 1 ms)")
    if "MLServer LightGBM runtime, v2 JSON" in results:
        v2 = results["mljobs v2, JSON [1, F]"][16]["rps"] / results["MLServer LightGBM runtime, v2 JSON"][16]["rps"]
        print(f"  mljobs v2 JSON / MLServer's LightGBM runtime at c=16: {v2:.1f}x")


if __name__ == "__main__":
    main()
