"""Reading CSV and Parquet inputs (a file, a folder of parts or a glob) with pyarrow."""

from __future__ import annotations

import fnmatch
import functools
import glob
import hashlib
import os
import re
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Collection, Generator, Iterator, Mapping, Sequence, Union

import blake3
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from . import csvdialect
from .cpus import usable_cpus
from .errors import BadInputError, UsageError
from .objectstore import S3Path, filesystem, is_s3, list_objects, translated

class NoInputFiles(BadInputError):
    """A folder or pattern that names no data files (for a scheduled job: nothing new yet)."""


SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


# A data file: a local path, or an object in S3 (s3://bucket/key).
DataFile = Union[Path, S3Path]


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
# The typed fast path parses pieces this size, each on one thread (several pieces at once):
# measured on 1M rows x 32 columns in the job, 1.55 s against 1.6 s for 2 MB pieces (8 MB: no
# faster) and 2.0 s for pyarrow's own threads on 8 MB blocks, whose hand-offs cost ~40% more CPU.
CSV_PARSE_BYTES = 4 << 20
CSV_PARSE_THREADS = min(4, usable_cpus())
# Room a piece's buffer has for the row begun in the read before, so the buffer can be reused.
PIECE_SLACK = 64 << 10
# The streaming reader's blocks: a row must fit in one (pyarrow's rule), so larger than a piece.
STREAM_BLOCK, MAX_STREAM_BLOCK = 16 << 20, 1 << 30


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
            raise BadInputError(f"cannot read {f.name}: {_arrow_message(exc)}") from exc
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BadInputError(f"the input files do not share one set of columns: {_arrow_message(exc)}") from exc
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
                    batches: Iterator[pa.RecordBatch] = _typed_csv(f, block, column_types or {}, fast_types,
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
            raise BadInputError(f"cannot read {f.name}: {_arrow_message(exc)}") from exc


def _typed_csv(path: DataFile, block: int, text_types: dict[str, pa.DataType],
               fast_types: dict[str, pa.DataType], hashes: dict[DataFile, str] | None = None) -> Iterator[pa.RecordBatch]:
    """A CSV file's batches of about `block` bytes, parsed with `fast_types` in pieces of
    CSV_PARSE_BYTES; a piece where that fails is parsed again with `text_types` (and is a batch of
    its own). Columns named in neither keep the type the first piece gave them (text if it had no
    values), so the batches of a file have one schema per path taken. A piece that does not end
    where a row does, as pyarrow reads it (see _csv_pieces), or that neither parse takes, hands
    the rest of the file, from that piece's first byte, to pyarrow's own reader (_streamed_csv).
    With `hashes`, the file's BLAKE3 goes there once the pieces reach its end (from the bytes
    read, not read again)."""
    digest = blake3.blake3() if hashes is not None else None
    spare: list[bytearray] = []  # the buffers of pieces parsed, for the pieces to come
    pieces = _csv_pieces(path, min(block, CSV_PARSE_BYTES), digest, spare)
    header_line = next(pieces, None)  # (the header line comes first)
    if header_line is None:
        return
    header, first = bytes(header_line), next(pieces)
    framing = len(header) + len(_empty_row(header))  # each piece's bytes that are not the file's
    first_result = _parse_piece(first, _piece_options({}, text_types, fast_types))
    if first_result is None:
        pieces.close()
        yield from _streamed_csv(path, header, len(header), block, text_types, None)
        return
    first_table, typed = first_result
    pinned = _pinned_types(first_table.schema, fast_types)
    options = _piece_options(pinned, text_types, fast_types)  # (built once: every piece takes the same)
    first_table = first_table.cast(pa.schema([pa.field(f.name, pinned.get(f.name, f.type)) for f in first_table.schema]))

    gathered: list[pa.Table] = []
    gathered_bytes = 0

    def flush() -> Iterator[pa.RecordBatch]:
        nonlocal gathered_bytes
        if gathered:
            yield from pa.concat_tables(gathered).combine_chunks().to_batches()
        gathered.clear()
        gathered_bytes = 0

    def parsed() -> Generator[tuple[tuple[pa.Table, bool] | None, int], None, None]:
        yield (first_table, typed), len(first)
        # The pieces after the first are parsed CSV_PARSE_THREADS at a time, handed on in order.
        pool = ThreadPoolExecutor(CSV_PARSE_THREADS, thread_name_prefix="mljobs-csv")
        try:
            ahead: deque[tuple[Future[tuple[pa.Table, bool] | None], bytes | memoryview]] = deque()

            def oldest() -> tuple[tuple[pa.Table, bool] | None, int]:
                future, piece = ahead.popleft()
                result = future.result()
                if isinstance(piece, memoryview) and isinstance(piece.obj, bytearray):
                    spare.append(piece.obj)  # parsed (pyarrow's tables hold copies, not the piece)
                return result, len(piece)

            for piece in pieces:
                ahead.append((pool.submit(_parse_piece, piece, options), piece))
                if len(ahead) > 2 * CSV_PARSE_THREADS:
                    yield oldest()
            while ahead:
                yield oldest()
        finally:
            pool.shutdown(cancel_futures=True)

    results, offset = parsed(), len(header)  # offset: where in the file the next piece's rows start
    for result, size in results:
        if result is None:
            results.close()
            pieces.close()
            yield from flush()
            yield from _streamed_csv(path, header, offset, block, text_types, pinned)
            return
        offset += size - framing
        table, typed_piece = result
        if table.num_rows == 0:
            continue
        if not typed_piece:
            yield from flush()
            yield from table.combine_chunks().to_batches()
            continue
        gathered.append(table)
        gathered_bytes += size
        if gathered_bytes >= block:
            yield from flush()
    yield from flush()
    if hashes is not None and digest is not None:
        hashes[path] = digest.hexdigest()


def _pinned_types(schema: pa.Schema, named: dict[str, pa.DataType]) -> dict[str, pa.DataType]:
    """The types of the columns not `named`, as a first block gave them, a blank one's as text
    (a later block's values would not fit "null"): every later block of the file takes them."""
    return {f.name: pa.string() if pa.types.is_null(f.type) else f.type for f in schema if f.name not in named}


PieceOptions = tuple[tuple[dict[str, Any], bool], ...]


def _piece_options(pinned: dict[str, pa.DataType], text_types: dict[str, pa.DataType],
                   fast_types: dict[str, pa.DataType]) -> PieceOptions:
    """The two ways to parse a piece, in the order tried: with `fast_types` (typed), else
    `text_types`; the columns named in neither take `pinned`. On the calling thread only."""
    return tuple((csvdialect.arrow_options({**pinned, **types}, threads=False), typed)
                 for types, typed in ((fast_types, True), (text_types, False)))


def _parse_piece(data: bytes | memoryview, options: PieceOptions) -> tuple[pa.Table, bool] | None:
    """A piece (see _csv_pieces) parsed with the first of `options` that takes it, without its
    closing row of empty cells; and whether that was the typed one. None when neither parse
    takes it, or when that row did not come back as a row of empty cells: the piece then ended
    inside a quoted value, as pyarrow reads it (a stray quote misled the cut)."""
    buffer = pa.py_buffer(data)
    for arrow_options, typed in options:
        try:
            table = pacsv.read_csv(buffer, **arrow_options)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue
        last = table.num_rows - 1
        if last < 0 or any(column[last].is_valid for column in table.columns):
            return None
        return table.slice(0, last), typed
    return None


def _streamed_csv(path: DataFile, header: bytes, offset: int, block: int, text_types: dict[str, pa.DataType],
                  pinned: dict[str, pa.DataType] | None) -> Iterator[pa.RecordBatch]:
    """The rows of a CSV file from byte `offset` (where a row starts) on, read with `text_types`
    by pyarrow's streaming reader, which finds where rows end itself (one thread: slower, for the
    files the pieces could not cut). Columns not in `text_types` take `pinned`, or else the types
    of the first block (text for a column it leaves blank)."""
    block = max(block, STREAM_BLOCK)
    yielded = False
    while True:
        with _open_from(path, header, offset) as stream:
            options = csvdialect.arrow_options({**(pinned or {}), **text_types}, block, threads=False)
            try:  # (open_csv reads the first block)
                for batch in pacsv.open_csv(stream, **options):
                    if pinned is None:  # the first block's types, for every block after
                        pinned = _pinned_types(batch.schema, text_types)
                        if any(pa.types.is_null(batch.schema.field(name).type) for name in pinned):
                            break  # a blank column: read again from the same byte with it as text
                    yielded = True
                    yield batch
                else:
                    return
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                message = _arrow_message(exc)
                if "straddles" in message and not yielded and block < MAX_STREAM_BLOCK:
                    block *= 2  # a row longer than a block, before any row was handed on: a larger block
                    continue
                if "straddles" in message:
                    message = f"a row (a value spanning lines) is longer than {block >> 20} MB"
                # pyarrow numbers rows from where this stream began, not from the file's start.
                raise BadInputError(f"cannot read {path.name}: {re.sub(r'Row #[0-9]+: ', '', message)}") from exc


class _HeaderThen:
    """A readable stream: the header line, then the file from a byte on."""

    closed = False

    def __init__(self, header: bytes, rest: Any):
        self.header, self.rest = header, rest

    def read(self, size: int | None = -1) -> bytes:
        if not self.header:
            return bytes(self.rest.read() if size is None or size < 0 else self.rest.read(size))
        if size is None or size < 0:
            out, self.header = self.header + bytes(self.rest.read()), b""
        else:
            out, self.header = self.header[:size], self.header[size:]
        return out

    def readable(self) -> bool:
        return True

    def __enter__(self) -> "_HeaderThen":
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True
        self.rest.close()


def _open_from(path: DataFile, header: bytes, offset: int) -> _HeaderThen:
    f = _open_bytes(path, seekable=True)
    f.seek(offset)
    return _HeaderThen(header, f)


def _open_bytes(path: DataFile, seekable: bool = False) -> Any:
    """The file's bytes to read ourselves: a local file, or an object's stream (`seekable`: a
    random-access reader, for an object)."""
    if isinstance(path, S3Path):
        return filesystem().open_input_file(path.path) if seekable else filesystem().open_input_stream(path.path)
    return open(path, "rb")


def _csv_pieces(path: DataFile, size: int, digest: Any = None,
                spare: list[bytearray] | None = None) -> Generator[bytes | memoryview, None, None]:
    """First the file's header line, then the file in pieces of about `size` bytes, each its
    header line, whole rows (cut at a line end outside quotes, counted as the dialect has them;
    the last piece ends where the file does) and a closing row of empty cells: parsed on its own,
    that row comes back as a row of its own only if the piece really ended outside quotes (a stray
    " inside an unquoted value miscounts them). Nothing for an empty file. `digest`, if given, is
    updated with every byte read. A piece is read into a buffer from `spare` when it has one (the
    caller puts there the buffers of pieces it is done with), else into a new one."""
    with _open_bytes(path) as f:
        header, pending = _header_line(f, size, digest)
        if header is None:
            return
        yield header
        closing = _empty_row(header)
        rest, yielded = b"", False
        buffer: bytearray | None = None  # the piece being filled: header, rows, up to `filled`
        filled = 0
        while True:
            if buffer is None:
                # Read into a buffer behind the header and the row begun in the read before: the
                # bytes are copied once, and a reused buffer is neither zeroed nor faulted in
                # again (a join after each read, then a new zeroed buffer, held the GIL for ~15%
                # of a CSV job).
                filled = len(header) + len(rest)
                needed = filled + max(size, len(pending)) + len(closing)
                buffer = spare.pop() if spare else None
                if buffer is None or len(buffer) < needed:
                    buffer = bytearray(needed + PIECE_SLACK)
                buffer[:filled] = header + rest
            elif len(buffer) < filled + size + len(closing):  # a long row: twice the room
                grown = bytearray(2 * len(buffer) + size)
                grown[:filled] = memoryview(buffer)[:filled]
                buffer = grown
            with memoryview(buffer) as view:
                if pending:  # what the header's read brought after it
                    got = len(pending)
                    view[filled:filled + got], pending = pending, b""
                elif got := f.readinto(view[filled:filled + size]):
                    if digest is not None:
                        digest.update(view[filled:filled + got])
            if not got:  # the file's end: the rows left are the last piece (a file of no rows: the header)
                if filled == len(header) and yielded:
                    return
                if filled > len(header) and buffer[filled - 1] != 0x0A:  # a last row with no line end
                    buffer[filled] = 0x0A
                    filled += 1
                buffer[filled:filled + len(closing)] = closing
                yield memoryview(buffer)[:filled + len(closing)]
                return
            start, filled = filled, filled + got  # this read's bytes
            cut = _last_row_end(buffer, len(header), start, filled)
            if cut == 0 and start - len(header) > 4 * size:
                # Every line end for 4 pieces looks quoted: most likely a stray " (12" for inches),
                # so cut at a line end rather than hold the file; the closing row checks the guess.
                cut = buffer.rfind(b"\n", start, filled) + 1
            if cut == 0:  # no row ends in this read: a long row, read on
                continue
            rest = bytes(memoryview(buffer)[cut:filled])
            buffer[cut:cut + len(closing)] = closing
            yield memoryview(buffer)[:cut + len(closing)]
            buffer, yielded = None, True


def _header_line(f: Any, size: int, digest: Any = None) -> tuple[bytes | None, bytes]:
    """The file's header row with its line end (one added if the file has no other) and the bytes
    read after it; None for an empty file. A quoted name may span lines."""
    head = b""
    while data := bytes(f.read(size)):
        if digest is not None:
            digest.update(data)
        head += data
        if end := _header_end(head):
            return head[:end], head[end:]
    return (head + b"\n" if head else None), b""


# A header row longer than this is taken to end at its first line end (an unclosed quote, most
# likely; pyarrow's parse then says what is wrong), rather than read on into the rows.
MAX_HEADER_BYTES = 1 << 20


def _header_end(head: bytes) -> int:
    """The index just after the header row's line end in `head`, 0 while it has none yet. As in
    pyarrow, a quote opens a quoted name only where a name starts; elsewhere it is itself."""
    first = head.find(b"\n") + 1
    if first and b'"' not in head[:first] or len(head) > MAX_HEADER_BYTES:
        return first
    quoted, at_start = False, True
    i = 3 if head.startswith(b"\xef\xbb\xbf") else 0  # (a byte-order mark is not part of the name)
    while i < len(head):
        byte = head[i]
        if quoted and byte == 0x22:
            if i + 1 == len(head):
                return 0  # a doubled quote or the name's end: the next read tells
            if head[i + 1] == 0x22:
                i += 1  # a doubled quote stands for one
            else:
                quoted = False
        elif not quoted and byte == 0x22 and at_start:
            quoted = True
        elif not quoted and byte == 0x0A:
            return i + 1
        at_start = not quoted and byte == 0x2C
        i += 1
    return 0


@functools.lru_cache(maxsize=8)  # the pieces and the offsets of a file both ask
def _empty_row(header: bytes) -> bytes:
    """A row of empty cells as wide as the header line (one column: an empty quoted cell, since
    an empty line is no row)."""
    try:  # pyarrow's own count (it takes a header Python's csv module would refuse, such as a,"b"c)
        width = pacsv.read_csv(pa.py_buffer(header), **csvdialect.arrow_options(threads=False)).num_columns
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        width = header.count(b",") + 1  # the pieces' parse then says what is wrong with it
    return b"," * (width - 1) + b"\n" if width > 1 else b'""\n'


def _last_row_end(buffer: bytearray, start: int, lead: int, end: int) -> int:
    """The index in `buffer` just after its last line end outside quotes at or after `lead` and
    before `end` (0 if it has none), counting quotes from `start` (which is outside them).
    Doubled quotes count twice, so an even count of quotes before a line end means it is outside them."""
    cut = buffer.rfind(b"\n", lead, end) + 1
    if cut == 0 or buffer.find(b'"', start, end) < 0:  # a byte search: files without quotes pay no more
        return cut
    quotes = buffer.count(b'"', start, cut)
    while quotes % 2:
        earlier = buffer.rfind(b"\n", lead, cut - 1) + 1
        if earlier == 0:
            return 0
        quotes -= buffer.count(b'"', earlier, cut)
        cut = earlier
    return cut


def _csv_block_size(path: DataFile, chunk_rows: int) -> int:
    """CSV batches are cut by bytes: size them from the file's own row length (measured on its
    first megabyte) to hold about chunk_rows rows, but no more than CSV_MAX_BLOCK bytes."""
    with _open_bytes(path) as f:
        sample = bytes(f.read(1 << 20))
    row_bytes = len(sample) / max(1, sample.count(b"\n"))
    return int(min(max(chunk_rows * row_bytes, 1 << 16), CSV_MAX_BLOCK))


def _arrow_message(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


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


def open_stream(path: DataFile) -> Any:
    """What pyarrow reads a CSV from as it streams in: the path, or an object's input stream."""
    if isinstance(path, S3Path):
        return filesystem().open_input_stream(path.path)
    return str(path)


def open_file(path: DataFile) -> Any:
    """A random-access reader (Parquet reads its footer first)."""
    if isinstance(path, S3Path):
        return filesystem().open_input_file(path.path)
    return str(path)
