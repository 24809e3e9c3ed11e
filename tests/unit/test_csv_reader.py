"""The CSV reader: the typed fast path gives the text path's values and rejects exactly (same row,
field and reason), with bad values in the first, a middle and the last block; the dialect's null
spellings are missing in every reader; the quick fingerprint."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from mljobs import csvdialect, demo, tableio, typed_csv
from mljobs.featurize import Featurizer
from mljobs.schema import CATEGORICAL, NUMERIC, Feature, FeatureSchema

SCHEMA = FeatureSchema((Feature("age", NUMERIC, "int64"), Feature("charges", NUMERIC, "double"),
                        Feature("plan", CATEGORICAL, "string", ("basic", "premium"))), "y", "regression")
TEXT = {f.name: pa.string() for f in SCHEMA.features}
TYPED = {f.name: pa.float64() if f.kind == NUMERIC else pa.string() for f in SCHEMA.features}


def write_rows(path, rows: int, bad: dict[int, str]) -> None:
    rng = np.random.default_rng(3)
    age = [str(v) for v in rng.integers(18, 80, rows)]
    for row, value in bad.items():
        age[row] = value
    charges = [f"{v:.3f}" for v in rng.normal(60, 20, rows)]
    charges[5] = "NA"
    table = pa.table({"id": [f"r{i}" for i in range(rows)], "age": age, "charges": charges,
                      "plan": rng.choice(["basic", "premium"], rows)})
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))


def featurized(path, fast: bool) -> tuple[np.ndarray, list[tuple[int | None, str, str]], list[pa.DataType]]:
    featurizer, first, matrices, errors, id_types = Featurizer(SCHEMA), 0, [], [], []
    for _, batch in tableio.iter_batches([path], 2_000, TEXT, TYPED if fast else None):
        features = featurizer.transform_table(batch, first)
        matrices.append(features.matrix)
        errors += [(e.row, e.field, e.reason) for e in features.errors]
        id_types.append(batch.schema.field("id").type)
        first += batch.num_rows
    return np.vstack(matrices), errors, id_types


@pytest.mark.parametrize("bad", [{}, {0: "x"}, {20_000: "forty", 20_001: "1.5.5"},
                                 {39_999: "?"}, {i: "bad" for i in range(0, 40_000, 3_000)}],
                         ids=["clean", "first-block", "middle", "last-row", "every-block"])
def test_the_typed_path_gives_the_text_paths_values_and_rejects(tmp_path, bad):
    path = tmp_path / "in.csv"
    write_rows(path, 40_000, bad)
    text_matrix, text_errors, _ = featurized(path, fast=False)
    typed_matrix, typed_errors, id_types = featurized(path, fast=True)
    assert typed_errors == text_errors
    assert [row for row, _, _ in typed_errors] == sorted(bad)
    np.testing.assert_array_equal(typed_matrix, text_matrix)
    assert set(id_types) == {pa.string()}


def test_the_typed_path_reads_a_ragged_file_as_an_error_naming_it(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("id,age,charges,plan\nr0,1,2.0,basic\nr1,3\n")
    with pytest.raises(tableio.BadInputError, match="cannot read ragged.csv"):
        list(tableio.iter_batches([path], 100, TEXT, TYPED))


def test_a_column_left_empty_in_the_first_piece_reads_as_text_after_it(tmp_path):
    """A column the model does not use (kept with --keep-columns, say), blank for the first
    thousands of rows: its type is not guessed from those blanks ("null"), it is text."""
    path = tmp_path / "notes.csv"
    rows = 40_000
    notes = [""] * 30_000 + [f"note {i}" for i in range(rows - 30_000)]
    write_rows(path, rows, {})
    table = pacsv.read_csv(path).append_column("note", pa.array(notes))
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
    batches = [b for _, b in tableio.iter_batches([path], 2_000, TEXT, TYPED)]
    assert {b.schema.field("note").type for b in batches} == {pa.string()}
    read = pa.Table.from_batches(batches).column("note").to_pylist()
    assert read[:30_000] == [None] * 30_000 and read[30_000:] == notes[30_000:]


def test_values_spanning_lines_read_alike_wherever_the_pieces_are_cut(tmp_path, monkeypatch):
    """Quoted values with line ends (and quotes) in them, in a column the model does not use and
    in a categorical one, across many pieces: the typed path gives the rows one whole read gives,
    the same featurized matrix as the text path, and the bad value's row (not line) number."""
    import csv
    import io

    rng = np.random.default_rng(5)
    notes = ["plain", 'say "hi"', "two\nlines", "three\r\nlines\nhere", "", 'q"\n"q']
    rows = [["id", "age", "charges", "plan", "note"]]
    for i in range(6_000):
        plan = "basic" if i % 7 else "premium\n(new)"
        rows.append([f"r{i}", str(rng.integers(18, 80)), f"{rng.normal(60, 20):.3f}", plan, notes[i % len(notes)]])
    rows[4_321][1] = "old"
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    path = tmp_path / "spans.csv"
    path.write_text(text.getvalue())
    whole = pacsv.read_csv(path, **csvdialect.arrow_options({c: pa.string() for c in rows[0]}))
    monkeypatch.setattr(typed_csv, "CSV_PARSE_BYTES", 997)  # ~200 pieces, cut all over the file
    assert len(list(typed_csv._csv_pieces(path, 997))) > 150  # (the header, then the pieces)
    batches = [b for _, b in tableio.iter_batches([path], 100, TEXT, TYPED)]
    for column in ("id", "plan", "note"):  # (the batch with the bad value is all text: read apart)
        assert [v for b in batches for v in b.column(column).to_pylist()] == whole.column(column).to_pylist()
    text_matrix, text_errors, _ = featurized(path, fast=False)
    typed_matrix, typed_errors, _ = featurized(path, fast=True)
    np.testing.assert_array_equal(typed_matrix, text_matrix)
    assert typed_errors == text_errors == [(4_320, "age", "expected a number, got 'old'")]


def test_every_null_spelling_is_missing_in_every_reader(tmp_path):
    import duckdb

    cells = [f'"{s}"' if i % 2 else s for i, s in enumerate(csvdialect.NULL_STRINGS)]
    path = tmp_path / "nulls.csv"
    path.write_text("a,b\n" + "".join(f"{c},x\n" for c in cells) + " NA,x\n")
    arrow = pacsv.read_csv(path, **csvdialect.arrow_options({"a": pa.string()})).column("a").to_pylist()
    duck = [r[0] for r in duckdb.sql(f"SELECT a FROM {csvdialect.duckdb_read_csv(str(path), {'a': 'VARCHAR'})}").fetchall()]
    python = [csvdialect.cell_value(row[0]) for row in list(csvdialect.text_rows(path.read_text()))[1:]]
    assert arrow == duck == python == [None] * len(cells) + [" NA"]


def test_the_quick_fingerprint_follows_size_and_ends_and_ignores_the_clock(tmp_path):
    path = tmp_path / "in.csv"
    pacsv.write_csv(demo.scoring_table(rows=5000), path)
    first = tableio.quick_fingerprint([path])
    copy = tmp_path / "copy" / "in.csv"
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    os.utime(copy, (1, 1))
    assert tableio.quick_fingerprint([copy]) == first
    data = bytearray(path.read_bytes())
    data[-3:-1] = b"99" if data[-3:-1] != b"99" else b"98"
    path.write_bytes(bytes(data))
    assert tableio.quick_fingerprint([path]) != first


def test_a_rerun_found_by_the_quick_fingerprint_is_confirmed_by_the_full_hash(demo_store, tmp_path):
    from mljobs.jobs import predict

    path, out = tmp_path / "in.csv", tmp_path / "out"
    pacsv.write_csv(demo.scoring_table(rows=5000), path)
    flags = ["--models-dir", str(demo_store / "models"), "--runs-dir", str(demo_store / "runs"), "--output", str(out), "--input", str(path)]
    assert predict.main(flags) == 0
    assert predict.main(flags) == 0  # the same bytes: found, confirmed, not scored again
    assert len(list(out.glob("model=demo/date=*/run=*"))) == 1
    # Same size, same ends, another digit in the middle: the cheap fingerprint matches, the hash does not.
    data = bytearray(path.read_bytes())
    middle = data.index(b",", len(data) // 2) + 1
    while not data[middle:middle + 1].isdigit():
        middle += 1
    data[middle:middle + 1] = b"1" if data[middle:middle + 1] != b"1" else b"2"
    path.write_bytes(bytes(data))
    assert predict.main(flags) == 0
    assert len(list(out.glob("model=demo/date=*/run=*"))) == 2


@pytest.mark.parametrize("newline, bom, last_newline", [("\n", "", True), ("\r\n", "\ufeff", False)], ids=["lf", "crlf-bom"])
def test_blank_lines_line_ends_and_a_byte_order_mark_number_rows_alike(tmp_path, newline, bom, last_newline):
    lines = ["id,age,charges,plan"]
    for i in range(30_000):
        age = "bad" if i in (7, 15_000, 29_999) else str(20 + i % 50)
        lines.append(f"r{i},{age},{i % 97}.5,{'basic' if i % 3 else 'premium'}")
        if i % 7 == 0:
            lines.append("")
    path = tmp_path / "in.csv"
    path.write_bytes((bom + newline.join(lines) + (newline if last_newline else "")).encode())
    text_matrix, text_errors, _ = featurized(path, fast=False)
    typed_matrix, typed_errors, _ = featurized(path, fast=True)
    assert [row for row, _, _ in typed_errors] == [7, 15_000, 29_999] and typed_errors == text_errors
    np.testing.assert_array_equal(typed_matrix, text_matrix)
    assert len(typed_matrix) == 30_000


@pytest.mark.parametrize("text", ["", "a,b", "a,b\n", "a,b\n1,2", "a,b\r\n1,2\r\n3,4\r\n", "\ufeffa,b\n" + "1,22\n" * 50 + "3,4",
                                  "a,b\n" + "1," + "9" * 300 + "\n5,6\n", "a" * 100 + ",b\n1,2\n"],
                         ids=["empty", "header-no-newline", "header-only", "no-last-newline", "crlf", "bom-many",
                              "line-longer-than-a-piece", "header-longer-than-a-piece"])
def test_csv_pieces_each_start_with_the_header_and_together_are_the_file(tmp_path, text):
    import blake3

    path = tmp_path / "in.csv"
    path.write_bytes(text.encode())
    digest = blake3.blake3()
    header, *pieces = [bytes(p) for p in typed_csv._csv_pieces(path, 16, digest)] or [None]
    assert digest.hexdigest() == blake3.blake3(text.encode()).hexdigest()
    if not text:
        assert header is None and pieces == []
        return
    assert header == text.encode().split(b"\n")[0] + b"\n"
    closing = b"," * header.count(b",") + b"\n" if b"," in header else b'""\n'  # a row of empty cells
    assert all(p.startswith(header) and p.endswith(closing) for p in pieces)
    body = b"".join(p[len(header):-len(closing)] for p in pieces)
    assert header + body in (text.encode(), text.encode() + b"\n")


def test_the_job_records_the_hash_of_the_csv_it_read(demo_store, tmp_path):
    """`input_blake3` of a CSV input comes from the bytes the reader parsed: the same value as
    hashing the file on its own."""
    import json

    from mljobs.jobs import predict

    path, out = tmp_path / "in.csv", tmp_path / "out"
    pacsv.write_csv(demo.scoring_table(rows=5000), path)
    flags = ["--models-dir", str(demo_store / "models"), "--runs-dir", str(demo_store / "runs"), "--output", str(out),
             "--input", str(path), "--chunk-rows", "500"]
    assert predict.main(flags) == 0
    (success,) = out.glob("model=demo/date=*/run=*/_SUCCESS")
    assert json.loads(success.read_text())["input_blake3"] == tableio.fingerprint([path])


def test_a_bare_quote_inside_a_value_is_itself_and_memory_stays_bounded(tmp_path, monkeypatch):
    """12" (inches) is outside the dialect (such a value should be quoted) but every reader takes
    the quote as itself; the pieces stay small even though every later line end looks quoted."""
    path = tmp_path / "inches.csv"
    inches = '12"'
    lines = ["id,age,charges,plan,size"] + [f"r{i},{30 + i % 40},{i % 97}.5,basic,{inches if i == 3 else 'small'}" for i in range(5_000)]
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(typed_csv, "CSV_PARSE_BYTES", 1_000)
    assert max(len(p) for p in typed_csv._csv_pieces(path, 1_000)) < 6_000
    batches = [b for _, b in tableio.iter_batches([path], 100, TEXT, TYPED)]
    sizes = [v for b in batches for v in b.column("size").to_pylist()]
    assert len(sizes) == 5_000 and sizes[3] == '12"' and sizes.count("small") == 4_999


SPAN_TYPES = {"id": pa.string(), "size": pa.string(), "note": pa.string()}


def read_in_small_pieces(path, monkeypatch) -> list[dict]:
    monkeypatch.setattr(typed_csv, "CSV_PARSE_BYTES", 64)
    return [r for _, b in tableio.iter_batches([path], 10, {"size": pa.string()}, {"size": pa.float64()}) for r in b.to_pylist()]


def whole_read(path) -> list[dict]:
    return pacsv.read_csv(path, **csvdialect.arrow_options(SPAN_TYPES)).to_pylist()


@pytest.mark.parametrize("shape", ["stray-quote-then-spanning-values", "a-value-longer-than-four-pieces"])
def test_a_misleading_cut_is_caught_and_the_rows_are_the_whole_files(tmp_path, monkeypatch, shape):
    """A stray " (5" for inches) makes the reader count the line ends of the values spanning
    lines after it as outside quotes, and a value longer than four pieces forces a cut inside it:
    each such piece is found out by its closing row, and pyarrow's own reader reads on."""
    path = tmp_path / "misleading.csv"
    if shape == "stray-quote-then-spanning-values":
        rows = [b"id,size,note\n", b'r1,5",x\n'] + [b'r%d,6,"a,b\nc,d,e"\n' % i for i in range(2, 60)]
    else:
        rows = [b"id,size,note\n", b'r1,6,"' + b"a line of the long note\n" * 40 + b'"\n'] + [b"r%d,7,short\n" % i for i in range(2, 60)]
    path.write_bytes(b"".join(rows))
    monkeypatch.setattr(tableio, "_csv_block_size", lambda path, rows: 256)  # the long note is 960 bytes
    got = read_in_small_pieces(path, monkeypatch)
    want = whole_read(path)
    assert len(got) == len(want) == 59
    assert [(r["id"], r["note"]) for r in got] == [(r["id"], r["note"]) for r in want]


def test_a_ragged_row_deep_in_the_file_is_named_by_its_text_not_a_wrong_number(tmp_path, monkeypatch):
    """The pieces hand a row they cannot parse to pyarrow's streaming reader, which numbers rows
    from where it began: the error shows the row as written, and no number."""
    path = tmp_path / "ragged.csv"
    path.write_bytes(b"id,size,note\n" + b"".join(b"r%d,6,x\n" % i for i in range(500)) + b"r500,6,x,extra\n" + b"r501,6,x\n")
    with pytest.raises(tableio.BadInputError, match=r"cannot read ragged.csv: CSV parse error: Expected 3 columns, got 4: r500,6,x,extra$"):
        read_in_small_pieces(path, monkeypatch)


def test_blank_lines_before_a_misleading_cut_lose_and_repeat_no_row(tmp_path, monkeypatch):
    """The rest of the file is read from the byte where the unchecked piece began, so blank lines
    before it (which pyarrow counts when it skips rows) shift nothing."""
    path = tmp_path / "blank.csv"
    rows = [b"id,size,note\n"] + [b"r%d,6,x\n\n" % i for i in range(30)] + [b'r30,5",x\n'] + [b'r%d,6,"a,b\nc,d,e"\n' % i for i in range(31, 60)]
    path.write_bytes(b"".join(rows))
    got = read_in_small_pieces(path, monkeypatch)
    assert [r["id"] for r in got] == [f"r{i}" for i in range(60)]
    assert [(r["id"], r["note"]) for r in got] == [(r["id"], r["note"]) for r in whole_read(path)]


def test_a_run_recorded_before_blake3_is_scored_again_saying_why(demo_store, tmp_path, caplog):
    import json

    from mljobs.jobs import predict

    path, out = tmp_path / "in.csv", tmp_path / "out"
    pacsv.write_csv(demo.scoring_table(rows=500), path)
    flags = ["--models-dir", str(demo_store / "models"), "--runs-dir", str(demo_store / "runs"), "--output", str(out), "--input", str(path)]
    assert predict.main(flags) == 0
    (success,) = out.glob("model=demo/date=*/run=*/_SUCCESS")
    summary = json.loads(success.read_text())
    summary["input_sha256"] = summary.pop("input_blake3")  # as an earlier mljobs wrote it
    success.write_text(json.dumps(summary))
    caplog.set_level("INFO", logger="mljobs")
    assert predict.main(flags) == 0
    assert len(list(out.glob("model=demo/date=*/run=*/_SUCCESS"))) == 2
    assert "records no input_blake3 (an earlier mljobs made it): scoring it again" in caplog.text


def test_a_quoted_header_name_may_span_lines(tmp_path):
    """The header row ends at the first line end outside quotes, as every other row does."""
    path = tmp_path / "names.csv"
    path.write_bytes(b'id,"my\nnote",amount\nr1,"a\nb",1.5\nr2,x,2\n')
    text = {"id": pa.string(), "my\nnote": pa.string(), "amount": pa.string()}
    rows = [row for _, b in tableio.iter_batches([path], 100, text, {**text, "amount": pa.float64()}) for row in b.to_pylist()]
    assert rows == [{"id": "r1", "my\nnote": "a\nb", "amount": 1.5}, {"id": "r2", "my\nnote": "x", "amount": 2.0}]


def test_a_quote_inside_a_header_name_is_itself_and_no_row_is_read_twice(tmp_path, monkeypatch):
    """pyarrow opens a quoted name only where a name starts: height (in") is a name with a quote
    in it, and the header row still ends at its own line end, however the rows after it quote."""
    path = tmp_path / "inches.csv"
    lines = ['id,height (in"),note', "r0,1.5,x", 'r1,2.5,12" pipe'] + [f"r{i},{i}.5,x" for i in range(2, 100)]
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(typed_csv, "CSV_PARSE_BYTES", 200)
    text = {"id": pa.string(), "height (in\")": pa.string(), "note": pa.string()}
    ids = [v for _, b in tableio.iter_batches([path], 100, text, dict(text)) for v in b.column("id").to_pylist()]
    assert ids == [f"r{i}" for i in range(100)]


def test_a_parsed_piece_holds_no_bytes_of_its_buffer(tmp_path):
    """The pieces' buffers are reused once parsed: pyarrow's CSV tables must hold copies of the
    values, not views into the bytes they were parsed from."""
    path = tmp_path / "in.csv"
    path.write_text("id,name,amount\n" + "".join(f'r{i},"name {i}",{i}.5\n' for i in range(50)))
    header, piece = list(typed_csv._csv_pieces(path, 1 << 20, spare=[]))
    assert isinstance(piece, memoryview) and isinstance(piece.obj, bytearray)
    text = {"id": pa.string(), "name": pa.string(), "amount": pa.string()}
    table, typed = typed_csv._parse_piece(piece, typed_csv._piece_options({}, text, {**text, "amount": pa.float64()}))
    before = table.to_pylist()
    piece.obj[:] = b"x" * len(piece.obj)
    assert typed and table.to_pylist() == before and before[7] == {"id": "r7", "name": "name 7", "amount": 7.5}
