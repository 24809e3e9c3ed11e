"""The model store and batch outputs in S3, against a real S3 server (SeaweedFS, tests/s3.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs as pafs

from mljobs import demo
from mljobs.errors import ModelError
from mljobs.featurize import Featurizer
from mljobs.jobs import predict, sql, train
from mljobs.objectstore import StoreUnreachable
from mljobs.predictor import load_predictor
from mljobs.serve.holder import Health, ModelHolder
from mljobs.serve.metrics import ServerMetrics
from mljobs.store import ModelRef, ModelStore
from tests import s3
from tests.s3 import S3Env, free_ports

s3_server, s3_env = s3.s3_server, s3.s3_env  # the real S3 server's fixtures, for this module
REPO = Path(__file__).resolve().parents[2]


def publish_text(store: ModelStore, name: str, text: str) -> str:
    return store.publish(name, lambda folder: (folder / "model.txt").write_text(text))


def objects(env: S3Env, prefix: str) -> dict[str, pafs.FileInfo]:
    fs = env.server.client()
    infos = fs.get_file_info(pafs.FileSelector(env.key(prefix), recursive=True, allow_not_found=True))  # type: ignore[attr-defined]
    return {i.path.split("/", 1)[1]: i for i in infos if i.type == pafs.FileType.File}


def last_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_model_trained_into_s3_predicts_what_the_same_model_from_a_folder_does(s3_env, tmp_path):
    url = s3_env.url("models")
    assert train.main(["--store", url, "--runs-dir", str(tmp_path / "runs")]) == 0
    assert train.main(["--models-dir", str(tmp_path / "models"), "--runs-dir", str(tmp_path / "runs")]) == 0
    from_s3, from_folder = load_predictor(ModelStore(url), "demo"), load_predictor(ModelStore(tmp_path / "models"), "demo")
    matrix = Featurizer(from_folder.schema).transform_table(demo.scoring_table()).matrix
    np.testing.assert_array_equal(from_s3.predict_raw(matrix), from_folder.predict_raw(matrix))
    keys = objects(s3_env, "models/demo")
    assert {"demo/1/MANIFEST", "demo/1/model.lgb.txt", "demo/aliases/latest"} <= {k.removeprefix("models/") for k in keys}


def test_aliases_promote_and_roll_back_in_s3(s3_env):
    store = ModelStore(s3_env.url("store"))
    assert [publish_text(store, "m", t) for t in "abc"] == ["1", "2", "3"]
    assert store.aliases("m") == {"latest": "3"}
    assert store.promote("m", "1", "production") is None
    assert store.promote("m", "2", "production") == "1"
    assert store.resolve(ModelRef.parse("m")) == "2"
    assert store.rollback("m", "production") == "1"
    assert store.aliases("m") == {"latest": "3", "production": "1"}
    assert store.alias_history("m", "production") == []
    assert store.names() == ["m"]
    with pytest.raises(ModelError, match="no version 9"):
        store.set_alias("m", "production", "9")


def test_a_version_without_its_manifest_does_not_exist(s3_env):
    store = ModelStore(s3_env.url("store"))
    publish_text(store, "m", "a")
    publish_text(store, "m", "b")
    s3_env.server.client().delete_file(s3_env.key("store/m/2/MANIFEST"))  # type: ignore[attr-defined]
    assert store.versions("m") == ["1"]
    with pytest.raises(ModelError, match="no version 2"):
        store.resolve(ModelRef.parse("m:2"))
    assert publish_text(store, "m", "c") == "3"  # the number of the incomplete one is never reused


@pytest.mark.parametrize("file", ["model.lgb.txt", "schema.json", "metadata.json", "MANIFEST"])
def test_one_flipped_byte_in_an_object_is_refused(s3_env, tmp_path, monkeypatch, file):
    """A reader (a new replica: its own cache) refuses the damaged version. One that cached the
    version's files before keeps loading those bytes, which still match the MANIFEST."""
    url = s3_env.url("models")
    assert train.main(["--store", url, "--runs-dir", str(tmp_path / "runs")]) == 0
    monkeypatch.setenv("MLJOBS_CACHE_DIR", str(tmp_path / "cache-of-a-new-replica"))
    fs, key = s3_env.server.client(), s3_env.key(f"models/demo/1/{file}")
    with fs.open_input_stream(key) as f:  # type: ignore[attr-defined]
        data = bytearray(f.read())
    data[len(data) // 2] ^= 1
    with fs.open_output_stream(key) as out:  # type: ignore[attr-defined]
        out.write(bytes(data))
    with pytest.raises(ModelError, match="demo:1 is refused"):
        load_predictor(ModelStore(url), "demo")


def test_a_signed_store_in_s3_refuses_what_is_not_signed_with_its_key(s3_env):
    key = b"a-test-signing-key-of-32-bytes!!"
    publish_text(ModelStore(s3_env.url("store")), "m", "unsigned")
    signed = ModelStore(s3_env.url("store"), key)
    publish_text(signed, "m", "signed")
    assert signed.open_version("m", "2").signed
    with pytest.raises(ModelError, match="m:1 is refused: it is not signed"):
        signed.open_version("m", "1")


def test_the_server_killed_mid_publish_leaves_no_version_and_a_retry_publishes(s3_env, monkeypatch, capsys):
    import mljobs.s3storage as s3storage

    store = ModelStore(s3_env.url("store"))
    publish_text(store, "m", "a")
    real_upload, uploaded = s3storage.upload, []

    def upload_then_die(fs, source, target):
        real_upload(fs, source, target)
        uploaded.append(target.name)
        s3_env.server.kill()  # after the first file: the MANIFEST never gets there

    monkeypatch.setattr(s3storage, "upload", upload_then_die)
    with pytest.raises(StoreUnreachable, match=f"the model store {s3_env.url('store')} is unreachable"):
        store.publish("m", lambda folder: [(folder / n).write_text(n) for n in ("a.txt", "b.txt")])
    assert uploaded == ["a.txt"]
    monkeypatch.setattr(s3storage, "upload", real_upload)
    s3_env.server.start()
    assert store.versions("m") == ["1"] and store.aliases("m") == {"latest": "1"}
    retried = publish_text(store, "m", "b")
    assert store.versions("m") == ["1", retried] and store.aliases("m")["latest"] == retried
    assert store.open_version("m", retried).files["model.txt"] == b"b"


def write_input(env: S3Env, key: str, table: pa.Table) -> str:
    with env.server.client().open_output_stream(env.key(key)) as out:  # type: ignore[attr-defined]
        pq.write_table(table, out)
    return env.url(key)


def committed_runs(env: S3Env, prefix: str) -> list[str]:
    return sorted(k.rsplit("/", 1)[0] for k in objects(env, prefix) if k.endswith("/_SUCCESS"))


def read_parquet(env: S3Env, key: str) -> pa.Table:
    with env.server.client().open_input_file(env.key(key)) as f:  # type: ignore[attr-defined]
        return pq.read_table(f)


def test_batch_predict_from_s3_to_s3_writes_success_last_and_reruns_are_idempotent(s3_env, tmp_path, demo_store):
    table = demo.scoring_table(rows=1000)
    source = write_input(s3_env, "in/part-0.parquet", table)
    write_input(s3_env, "in/_ignored.parquet", table.slice(0, 3))
    args = ["--models-dir", str(demo_store / "models"), "--runs-dir", str(tmp_path / "runs"), "--input", s3_env.url("in"),
            "--output", s3_env.url("out"), "--keep-columns", "customer_id", "--chunk-rows", "100"]
    assert source.endswith("part-0.parquet")
    assert predict.main(args) == 0
    [run] = committed_runs(s3_env, "out")
    written = objects(s3_env, run)
    assert written[f"{run}/_SUCCESS"].mtime >= written[f"{run}/predictions.parquet"].mtime
    scored = read_parquet(s3_env, f"{run}/predictions.parquet")
    assert scored.column("customer_id").to_pylist() == table.column("customer_id").to_pylist()
    expected = load_predictor(ModelStore(demo_store / "models"), "demo").score_table(table)[0]["prediction"]
    assert scored.column("prediction").to_pylist() == expected.to_pylist()
    assert json.loads(s3_env.server.client().open_input_stream(s3_env.key(f"{run}/_SUCCESS")).read())["rows"]["in"] == 1000  # type: ignore[attr-defined]
    assert predict.main(args) == 0  # the same input, model and options: found, nothing written
    assert committed_runs(s3_env, "out") == [run]


def test_a_killed_batch_run_leaves_no_success_and_the_rerun_completes_once(s3_env, tmp_path, demo_store):
    table = demo.scoring_table(rows=400_000, seed=3)
    write_input(s3_env, "in/big.parquet", table)
    args = [sys.executable, "-m", "mljobs.jobs.predict", "--models-dir", str(demo_store / "models"),
            "--runs-dir", str(tmp_path / "runs"), "--input", s3_env.url("in/big.parquet"), "--output", s3_env.url("out"),
            "--chunk-rows", "5000", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "shared")}
    job = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    assert job.stderr is not None
    for line in job.stderr:  # kill it once it has streamed some of its rows out
        if "scored 100000 rows" in line:
            os.kill(job.pid, signal.SIGKILL)
            break
    job.wait(timeout=60)
    job.stderr.close()
    assert job.returncode == -signal.SIGKILL
    assert committed_runs(s3_env, "out") == []
    assert subprocess.run(args, env=env, capture_output=True, timeout=600).returncode == 0
    [run] = committed_runs(s3_env, "out")
    assert read_parquet(s3_env, f"{run}/predictions.parquet").num_rows == 400_000
    total = sum(read_parquet(s3_env, k).num_rows for k in objects(s3_env, "out") if k.endswith("predictions.parquet"))
    assert total == 400_000  # the killed run left no predictions anyone could read twice


def test_sql_reads_a_table_from_s3_and_writes_its_result_there(s3_env, tmp_path, demo_store):
    table = demo.scoring_table(rows=50)
    write_input(s3_env, "in/new.parquet", table)
    code = sql.main(["--models-dir", str(demo_store / "models"), "--runs-dir", str(tmp_path / "runs"),
                     "--table", f"new={s3_env.url('in/*.parquet')}", "--output", s3_env.url("out"),
                     "SELECT customer_id, predict_demo(t) AS churn FROM new t"])
    assert code == 0
    [run] = committed_runs(s3_env, "out")
    result = read_parquet(s3_env, f"{run}/result.parquet")
    assert result.num_rows == 50 and result.column_names == ["customer_id", "churn"]


def test_wrong_credentials_are_one_line_naming_the_store_exit_2(s3_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    code = predict.main(["--store", s3_env.url("models"), "--runs-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "out")])
    assert code == 2
    assert last_error_line(capsys).startswith(f"predict failed: the model store {s3_env.url('models')} refused the credentials")


def test_an_unreachable_endpoint_is_one_line_naming_the_store_exit_4(s3_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_ports(1)[0]}")
    code = predict.main(["--store", s3_env.url("models"), "--runs-dir", str(tmp_path / "runs"), "--output", str(tmp_path / "out")])
    assert code == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"predict failed: the model store {s3_env.url('models')} is unreachable at http://127.0.0.1:")


def test_the_holder_follows_an_alias_in_s3_and_keeps_serving_when_the_store_goes_away(s3_env, tmp_path):
    url = s3_env.url("models")
    assert train.main(["--store", url, "--runs-dir", str(tmp_path / "runs")]) == 0
    assert train.main(["--store", url, "--runs-dir", str(tmp_path / "runs"), "--seed", "7"]) == 0
    store = ModelStore(url)
    store.promote("demo", "1", "production")
    metrics = ServerMetrics()
    holder = ModelHolder(store, ModelRef.parse("demo"), metrics)
    holder.refresh()
    assert holder.predictor is not None and holder.predictor.version == "1"
    store.promote("demo", "2", "production")
    holder.refresh()
    assert holder.predictor.version == "2"  # hot swap on promote, as on a volume
    s3_env.server.kill()
    started = time.monotonic()
    holder.refresh()
    assert time.monotonic() - started < 30
    assert holder.predictor.version == "2" and holder.readiness().state is Health.READY
    assert "unreachable" in (holder.last_error or "")
    assert metrics.follow_errors._value.get() >= 1
    s3_env.server.start()
    store.promote("demo", "1", "production")
    holder.refresh()
    assert holder.predictor.version == "1"  # a store that comes back is followed again; nothing was refused


def test_a_csv_object_reads_as_the_same_file_on_disk_does(s3_env, tmp_path, monkeypatch):
    """The CSV pieces read an object's stream as they read a file: the same rows, values spanning
    lines and all, cut into many pieces."""
    from mljobs import tableio, typed_csv
    from mljobs.objectstore import S3Path

    notes = ["two\nlines", "one", "one", "one", "one"]
    lines = ["id,note,amount"] + [f'r{i},"{notes[i % 5]}",{i}.5' for i in range(3_000)]
    data = ("\n".join(lines) + "\n").encode()
    (tmp_path / "in.csv").write_bytes(data)
    with s3_env.server.client().open_output_stream(s3_env.key("in/notes.csv")) as out:  # type: ignore[attr-defined]
        out.write(data)
    monkeypatch.setattr(typed_csv, "CSV_PARSE_BYTES", 2_000)
    text = {"id": pa.string(), "note": pa.string(), "amount": pa.string()}
    typed = {**text, "amount": pa.float64()}

    def rows(source: object) -> list[dict[str, object]]:
        return [row for _, b in tableio.iter_batches([source], 100, text, typed) for row in b.to_pylist()]

    on_disk = rows(tmp_path / "in.csv")
    assert len(on_disk) == 3_000 and on_disk[5] == {"id": "r5", "note": "two\nlines", "amount": 5.5}
    assert rows(S3Path.parse(s3_env.url("in/notes.csv"))) == on_disk
