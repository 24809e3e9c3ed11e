"""Prediction outputs that appear whole or not at all.

In a folder, a run writes into a hidden staging folder under the output root, then renames it to
<root>/model=<name>/date=<YYYY-MM-DD>/run=<run-id>/ with a _SUCCESS marker inside. Readers
(and Hive-style partition discovery in DuckDB, Spark, pandas) never see a partial run.

In S3 (an s3://bucket/prefix root) there is no rename: a run streams its files straight under its
run prefix and writes _SUCCESS last. A run without _SUCCESS is not done: reruns and readers trust
only runs with one (see committed_run); a failed run removes its objects, a killed one leaves
them to be swept by a later run of the same model.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Union

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import UsageError
from . import s3_outputs
from .fsutil import fsync_dir, fsync_tree, remove_stale_staging, staging_name
from .objectstore import S3Path, filesystem, is_s3

FORMATS = ("parquet", "csv")
SUCCESS = s3_outputs.SUCCESS


# Where outputs go: a local folder, or a prefix in S3.
OutputRoot = Union[Path, S3Path]


def output_root(spec: str | Path) -> OutputRoot:
    return S3Path.parse(spec) if isinstance(spec, str) and is_s3(spec) else Path(spec)


def run_folder(root: OutputRoot, name: str, run_id: str, partition: str = "model") -> OutputRoot:
    """<root>/<partition>=<name>/date=<today>/run=<run-id>: Hive-style, so engines read it as a table."""
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return root / f"{partition}={name}" / f"date={day}" / f"run={run_id}"


def earlier_run(root: OutputRoot, model: str, key: str) -> dict[str, Any] | None:
    """The summary of a committed run of `model` with the same idempotency key, if any."""
    if isinstance(root, S3Path):
        return s3_outputs.earlier_run(root, model, key)
    for marker in sorted(root.glob(f"model={model}/date=*/run=*/{SUCCESS}")):
        try:
            summary = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if summary.get("key") == key:
            return {**summary, "path": str(marker.parent)}
    return None


def ensure_output_root(root: OutputRoot) -> None:
    """Create the output root (with its missing parents) if needed, then check this job can write it."""
    if isinstance(root, S3Path):
        s3_outputs.check_reachable(root)
        return
    if not root.is_dir():
        if root.exists():
            raise UsageError(f"output {root} is a file, not a folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror.lower() if exc.strerror else str(exc)
            raise UsageError(
                f"cannot create output folder {root}: {reason} (this job runs as uid {os.getuid()}); "
                f"create it first, or choose a folder under one the job can write"
            ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        st = root.stat()
        raise UsageError(
            f"cannot write to {root}: it belongs to uid {st.st_uid} and this job runs as uid {os.getuid()}; "
            f"make it writable (chmod a+w) or run the job as its owner (MLJOBS_UID/MLJOBS_GID with compose)"
        )


class TableWriter:
    """Appends record batches to one Parquet or CSV file."""

    def __init__(self, path: OutputRoot, fmt: str):
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.path, self.fmt = path, fmt
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self._sink: Any = None
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            # An object is streamed up in parts as it is written: memory follows the part, not the file.
            self._sink = filesystem().open_output_stream(self.path.path) if isinstance(self.path, S3Path) else str(self.path)
            self._writer = (
                pq.ParquetWriter(self._sink, batch.schema)
                if self.fmt == "parquet"
                else pacsv.CSVWriter(self._sink, batch.schema)
            )
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._sink is not None and not isinstance(self._sink, str):
            self._sink.close()


@contextmanager
def committed_folder(final: OutputRoot, summary: dict[str, Any]) -> Iterator[OutputRoot]:
    """Yield a staging folder; on clean exit write `summary` as its _SUCCESS marker and rename
    it to `final`. The caller may add to `summary` until then. (In S3: see s3_outputs.committed_run.)"""
    if isinstance(final, S3Path):
        with s3_outputs.committed_run(final, summary) as prefix:
            yield prefix
        return
    root = final.parents[2]
    remove_stale_staging(root)
    staging = root / staging_name()
    staging.mkdir()
    try:
        yield staging
        (staging / SUCCESS).write_text(json.dumps(summary, indent=2))
        fsync_tree(staging)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
        fsync_dir(final.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
