"""A CSV file read by the model's schema, at the parser's speed: the file is cut into pieces at
row ends (outside quotes), the pieces are parsed with the numeric features typed, several at once
on threads of their own; a piece where that fails is parsed again as text (so the featurizer can
name each bad value's row and field), and what the pieces cannot cut goes to pyarrow's streaming
reader. One dialect (csvdialect) throughout."""

from __future__ import annotations

import functools
import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generator, Iterator

import blake3
import pyarrow as pa
import pyarrow.csv as pacsv

from . import csvdialect
from .cpus import usable_cpus
from .datafile import DataFile, open_bytes
from .errors import BadInputError, arrow_message

# The typed fast path parses pieces this size, each on one thread (several pieces at once):
# measured on 1M rows x 32 columns in the job, 1.55 s against 1.6 s for 2 MB pieces (8 MB: no
# faster) and 2.0 s for pyarrow's own threads on 8 MB blocks, whose hand-offs cost ~40% more CPU.
CSV_PARSE_BYTES = 4 << 20
CSV_PARSE_THREADS = min(4, usable_cpus())
# Room a piece's buffer has for the row begun in the read before, so the buffer can be reused.
PIECE_SLACK = 64 << 10
# The streaming reader's blocks: a row must fit in one (pyarrow's rule), so larger than a piece.
STREAM_BLOCK, MAX_STREAM_BLOCK = 16 << 20, 1 << 30


def typed_batches(path: DataFile, block: int, text_types: dict[str, pa.DataType],
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


# The ways to parse a piece (see _piece_options); the parse threads share them, read only.
_PieceOptions = tuple[tuple[dict[str, Any], bool], ...]


def _piece_options(pinned: dict[str, pa.DataType], text_types: dict[str, pa.DataType],
                   fast_types: dict[str, pa.DataType]) -> _PieceOptions:
    """The two ways to parse a piece, in the order tried: with `fast_types` (typed), else
    `text_types`; the columns named in neither take `pinned`. Without pyarrow's own threads: each
    piece is parsed on the thread that takes it."""
    return tuple((csvdialect.arrow_options({**pinned, **types}, threads=False), typed)
                 for types, typed in ((fast_types, True), (text_types, False)))


def _parse_piece(data: bytes | memoryview, options: _PieceOptions) -> tuple[pa.Table, bool] | None:
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
                message = arrow_message(exc)
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
    f = open_bytes(path, seekable=True)
    f.seek(offset)
    return _HeaderThen(header, f)


def _csv_pieces(path: DataFile, size: int, digest: Any = None,
                spare: list[bytearray] | None = None) -> Generator[bytes | memoryview, None, None]:
    """First the file's header line, then the file in pieces of about `size` bytes, each its
    header line, whole rows (cut at a line end outside quotes, counted as the dialect has them;
    the last piece ends where the file does) and a closing row of empty cells: parsed on its own,
    that row comes back as a row of its own only if the piece really ended outside quotes (a stray
    " inside an unquoted value miscounts them). Nothing for an empty file. `digest`, if given, is
    updated with every byte read. A piece is read into a buffer from `spare` when it has one (the
    caller puts there the buffers of pieces it is done with), else into a new one."""
    with open_bytes(path) as f:
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
