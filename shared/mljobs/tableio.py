"""Reading CSV and Parquet inputs (a file, a folder of parts or a glob) with pyarrow."""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import threading
from pathlib import Path
from typing import Callable, Collection, Iterator, Mapping, Sequence

import blake3
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from . import csvdialect
from .datafile import DataFile, open_bytes, open_file, open_stream
from .errors import BadInputError, UsageError, arrow_message
from .objectstore import S3Path, filesystem, is_s3, list_objects, translated
from .typed_csv import typed_batches


class NoInputFiles(BadInputError):
    """A folder or pattern that names no data files (for a scheduled job: nothing new yet)."""


SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def resolve_inputs(spec: str) -> list[DataFile]:
    """The files an --input names, in a stable order."""
    if is_s3(spec):
        return list(resolve_s3_inputs(S3Path.parse(spec), spec))
    try:
        files: list[DataFile] = list(_resolve_inputs(spec))
        return files
    except PermissionError as exc:
        raise BadInputError(
            f"cannot read {exc.filename or spec}: permission denied for uid {os.getuid()} "
            "(make it readable for others, e.g. chmod o+rx on its folders, or run the job as its owner)"
        ) from None


def _resolve_inputs(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and not p.name.startswith((".", "_")))
        if not files:
            raise NoInputFiles(f"input folder {spec} has no .csv or .parquet files")
    elif any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
        if not files:
            raise NoInputFiles(f"input pattern {spec} matches no files")
    elif path.is_file():
        files = [path]
    else:
        raise BadInputError(f"input {spec} does not exist")
    for f in files:
        if f.suffix.lower() not in SUFFIXES:
            raise UsageError(f"input {f} is neither .csv nor .parquet")
    return files


# pyarrow parses the blocks ahead of the reader on other cores; larger blocks measured slower
# (1M rows x 32 columns: 4.5 s at 6 MB, 6.9 s at 60 MB) and take more memory.
CSV_MAX_BLOCK = 8 << 20


def fingerprint(files: Sequence[DataFile], known: Mapping[DataFile, str] | None = None) -> str:
    """BLAKE3 over the files' names and contents (for objects: their size and modification time,
    not read twice): the same data gives the same fingerprint. A file's own hash in `known` (from
    a reader that read it anyway) is taken instead of reading the file again."""
    digest = blake3.blake3()
    for f in files:
        digest.update(f"{f.name}:{(known or {}).get(f) or _file_hash(f)}\n".encode())
    return digest.hexdigest()


def _file_hash(f: DataFile) -> str:
    return object_identity(f) if isinstance(f, S3Path) else _blake3(f)


# Large reads into one buffer: a hash running beside the scoring takes the GIL back once per
# read, and each time may wait for it (up to the 5 ms switch interval), so fewer reads finish sooner.
HASH_READ_BYTES = 16 << 20


# BLAKE3, not sha256: a cryptographic hash at 0.09 CPU-s per 600 MB against sha256's 0.33 on
# these machines (a CSV job's whole parse is ~1.2); `b3sum` gives a file's own hash from a shell.
def _blake3(path: Path) -> str:
    digest = blake3.blake3()
    buffer = bytearray(HASH_READ_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while size := f.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


# The bytes read from each end of a file for the quick fingerprint.
SAMPLE_BYTES = 1 << 16


def quick_fingerprint(files: Sequence[DataFile]) -> str:
    """sha256 over the files' names, sizes and first and last SAMPLE_BYTES (objects: size and
    modification time): cheap at any size; `fingerprint` confirms a match."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}:{object_identity(f) if isinstance(f, S3Path) else _sampled(f)}\n".encode())
    return digest.hexdigest()


def fingerprint_in_background(files: Sequence[DataFile], read_by_reader: Collection[DataFile] = (),
                              known: Mapping[DataFile, str] | None = None) -> Callable[[], str]:
    """`fingerprint(files)`, ready when the returned call is made: the files in `read_by_reader`
    take their hash from `known` (filled in by the reader as it reaches each one's end; read then
    if it has not), the others are hashed now on a daemon thread (hashing releases the GIL, so it
    runs beside the scoring). A job that fails does not wait for it at all."""
    others = [f for f in files if f not in read_by_reader]
    result: list[dict[DataFile, str] | BaseException] = []

    def work() -> None:
        try:
            result.append({f: _file_hash(f) for f in others})
        except BaseException as exc:  # handed to whoever waits for the result
            result.append(exc)

    thread = threading.Thread(target=work, name="mljobs-fingerprint", daemon=True)
    thread.start()

    def wait() -> str:
        thread.join()
        if isinstance(result[0], BaseException):
            raise result[0]
        return fingerprint(files, {**result[0], **(known or {})})
    return wait


def _sampled(path: Path) -> str:
    sample = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        sample.update(f.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            sample.update(f.read(SAMPLE_BYTES))
    return f"{size}:{sample.hexdigest()}"


def read_table(files: Sequence[DataFile], column_types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """Read every file into one table (training reads all of its data)."""
    tables = []
    for f in files:
        try:
            if SUFFIXES[f.suffix.lower()] == "csv":
                tables.append(pacsv.read_csv(open_stream(f), **csvdialect.arrow_options(column_types)))
            else:
                tables.append(pq.read_table(open_file(f)))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise BadInputError(f"cannot read {f.name}: {arrow_message(exc)}") from exc
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BadInputError(f"the input files do not share one set of columns: {arrow_message(exc)}") from exc
    if table.num_rows == 0:
        raise BadInputError(f"input {', '.join(f.name for f in files)} has no rows")
    return table


def iter_batches(
    files: Sequence[DataFile], chunk_rows: int, column_types: dict[str, pa.DataType] | None = None,
    fast_types: dict[str, pa.DataType] | None = None, hashes: dict[DataFile, str] | None = None,
) -> Iterator[tuple[DataFile, pa.RecordBatch]]:
    """Stream the input in record batches of about `chunk_rows` rows (CSV batches are cut by
    bytes, so theirs vary). CSV columns get `column_types`; with `fast_types`, a block is first
    parsed with those instead (numbers as numbers), and read again with `column_types` only if
    that fails, so a bad value still reaches the caller as it was written. Each local CSV file
    read that way to its end gets its BLAKE3 (as `fingerprint` takes it) put in `hashes`."""
    for f in files:
        try:
            if SUFFIXES[f.suffix.lower()] == "csv":
                block = _csv_block_size(f, chunk_rows)
                if fast_types:
                    batches: Iterator[pa.RecordBatch] = typed_batches(f, block, column_types or {}, fast_types,
                                                                      hashes if isinstance(f, Path) else None)
                else:
                    batches = iter(pacsv.open_csv(open_stream(f), **csvdialect.arrow_options(column_types, block)))
            else:
                # Buffered reads without pre-buffering: memory follows the batch, not the row group.
                parquet = pq.ParquetFile(open_file(f), buffer_size=1 << 20, pre_buffer=False)
                batches = parquet.iter_batches(batch_size=chunk_rows)
            for batch in batches:
                yield f, batch
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise BadInputError(f"cannot read {f.name}: {arrow_message(exc)}") from exc


def _csv_block_size(path: DataFile, chunk_rows: int) -> int:
    """CSV batches are cut by bytes: size them from the file's own row length (measured on its
    first megabyte) to hold about chunk_rows rows, but no more than CSV_MAX_BLOCK bytes."""
    with open_bytes(path) as f:
        sample = bytes(f.read(1 << 20))
    row_bytes = len(sample) / max(1, sample.count(b"\n"))
    return int(min(max(chunk_rows * row_bytes, 1 << 16), CSV_MAX_BLOCK))


# --- objects in S3 ------------------------------------------------------------------------------

def resolve_s3_inputs(prefix: S3Path, spec: str) -> list[S3Path]:
    """An object, every data object under a prefix (a "folder"), or a glob over object names."""
    fs = filesystem()
    pattern = any(ch in spec for ch in "*?[")
    base = prefix
    while pattern and any(ch in base.key for ch in "*?["):
        base = base.parent
    with translated(f"input {spec}", BadInputError):
        infos = list_objects(fs, base, recursive=pattern) if pattern else list_objects(fs, prefix, recursive=False)
        single = None if pattern or infos else fs.get_file_info(prefix.path)
    if single is not None and single.type == pafs.FileType.File:
        files = [prefix]
    else:
        found = [S3Path(base.bucket, i.path.partition("/")[2]) for i in infos if i.type == pafs.FileType.File]
        if pattern:
            files = sorted((f for f in found if fnmatch.fnmatchcase(str(f), spec)), key=str)
        else:
            files = sorted((f for f in found if f.suffix.lower() in SUFFIXES and not f.name.startswith((".", "_"))), key=str)
        if not files:
            if not pattern and not infos:
                raise BadInputError(f"input {spec} does not exist")
            raise NoInputFiles(f"input {'pattern' if pattern else 'folder'} {spec} {'matches no files' if pattern else 'has no .csv or .parquet files'}")
    for f in files:
        if f.suffix.lower() not in SUFFIXES:
            raise UsageError(f"input {f} is neither .csv nor .parquet")
    return files


def object_identity(path: S3Path) -> str:
    with translated(f"input {path}", BadInputError):
        info = filesystem().get_file_info(path.path)
    return f"{info.size}:{info.mtime_ns}"
