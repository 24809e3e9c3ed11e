"""Job outputs under an S3 prefix, committed the object-store way: a run's files are streamed
straight under <root>/<partition>=<name>/date=<day>/run=<run-id>/ and `_SUCCESS` (the run's
summary) is written last. Only runs with `_SUCCESS` exist for reruns and readers; a failed run
deletes what it wrote, and one that was killed is swept by a later run of the same model once its
objects are older than a live run's could be."""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from typing import Any, Iterator

from pyarrow import fs as pafs

from .errors import UsageError
from .objectstore import S3Path, delete_prefix, filesystem, list_objects, read_bytes, translated, write_bytes

SUCCESS = "_SUCCESS"
STALE_RUN_SECONDS = 6 * 3600

log = logging.getLogger("mljobs.outputs")


def check_reachable(root: S3Path) -> None:
    """A wrong endpoint, credentials or bucket stops the job at once (exit 2), before any work."""
    with translated(f"output {root}", UsageError):
        list_objects(filesystem(), root, recursive=False)


def runs(partition: S3Path) -> dict[S3Path, list[pafs.FileInfo]]:
    """Every run prefix under `<partition>=<name>/`, with its objects."""
    found: dict[S3Path, list[pafs.FileInfo]] = {}
    with translated(f"output {partition}", UsageError):
        objects = list_objects(filesystem(), partition)
    for info in objects:
        if info.type != pafs.FileType.File:
            continue
        path = S3Path(partition.bucket, info.path.partition("/")[2])
        parts = path.relative_to(partition).split("/")
        if len(parts) == 3 and parts[0].startswith("date=") and parts[1].startswith("run="):
            found.setdefault(path.parent, []).append(info)
    return found


def earlier_run(root: S3Path, model: str, key: str) -> dict[str, Any] | None:
    """The summary of a committed run of `model` with the same idempotency key, if any."""
    fs = filesystem()
    for run, objects in sorted(runs(root / f"model={model}").items(), key=lambda item: str(item[0])):
        if not any(o.base_name == SUCCESS for o in objects):
            continue
        try:
            with translated(f"output {root}", UsageError):
                summary = json.loads(read_bytes(fs, run / SUCCESS))
        except (FileNotFoundError, ValueError):
            continue
        if summary.get("key") == key:
            return {**summary, "path": str(run)}
    return None


def sweep_unfinished(partition: S3Path, older_than_s: float = STALE_RUN_SECONDS) -> None:
    """Delete runs that have no _SUCCESS and whose newest object is older than a live run's could be."""
    now_ns = time.time_ns()
    for run, objects in runs(partition).items():
        newest = max((o.mtime_ns or 0) for o in objects)
        if not any(o.base_name == SUCCESS for o in objects) and now_ns - newest > older_than_s * 1e9:
            log.info("removing %s, an unfinished run", run)
            _forget(run)


@contextmanager
def committed_run(final: S3Path, summary: dict[str, Any]) -> Iterator[S3Path]:
    """Yield the run's prefix; on clean exit write `summary` as its _SUCCESS, last. On an error
    (or SIGTERM) remove what the run wrote, so only a SIGKILL leaves an unfinished run behind."""
    what = f"output {final}"
    sweep_unfinished(final.parent.parent)
    try:
        with translated(what, UsageError):
            yield final
            write_bytes(filesystem(), final / SUCCESS, json.dumps(summary, indent=2).encode())
    except BaseException:
        _forget(final)
        raise


def _forget(run: S3Path) -> None:
    try:
        delete_prefix(filesystem(), run)
    except OSError as exc:  # the store may be what failed: the run stays unfinished, and is swept later
        log.warning("could not remove the unfinished run %s: %s", run, exc)
