"""Ad-hoc predictions through SQL with DuckDB (python -m mljobs.jobs.sql "SELECT ...").

Stored models are SQL functions: predict_<model>(row) and predict_<model>_proba(row), where row
is the table alias (DuckDB passes a whole row as a struct). Files are tables:

    SELECT c.customer_id, predict_demo(c) AS churn
    FROM '/data/input/new.parquet' c JOIN '/data/input/accounts.csv' a USING (customer_id)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from .. import csvdialect
from ..errors import BadInputError, InvalidRecordsError, MljobsError, ModelError, UsageError
from ..outputs import FORMATS, TableWriter, output_root as output_location, committed_folder, ensure_output_root, run_folder
from ..predictor import load_predictor
from ..objectstore import filesystem, is_s3, translated
from ..runs import RunRecord
from ..tableio import SUFFIXES, resolve_inputs
from ..store import ModelRef
from .store_option import STORE_DEFAULT, add_store_flag, job_store
from .common import add_common_flags, as_list, run_job

log = logging.getLogger("mljobs.sql")

DEFAULTS: dict[str, Any] = {"query": None, "file": None, "model": [], "table": [], "output": "/data/output",
                            "format": "parquet", "show": 10}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sql", description="Run a SQL query in which stored models are functions.")
    p.add_argument("query", nargs="?", help="the query (or --file)")
    p.add_argument("--file", help="a file holding the query")
    p.add_argument("--model", action="append", help="NAME@ALIAS or NAME:VERSION to use for predict_NAME and ml_*('NAME', ...) (default: production, else latest)")
    p.add_argument("--table", action="append", help="NAME=PATH: a CSV or Parquet file (or glob) as a table")
    p.add_argument("--output", help="output root folder (default /data/output)")
    p.add_argument("--format", choices=FORMATS)
    p.add_argument("--show", type=int, help="rows of the result to print (default 10)")
    add_common_flags(p)
    add_store_flag(p)
    return p


def query_text(args: argparse.Namespace) -> str:
    if bool(args.query) == bool(args.file):
        raise UsageError("give the query either as an argument or with --file, not both")
    if args.file:
        try:
            return Path(args.file).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read --file {args.file}: {exc.strerror}") from None
    return str(args.query)


def connect(args: argparse.Namespace, query: str, record: RunRecord) -> Any:
    import duckdb

    from ..sql import function_name, models_called
    from ..sql.csv_tables import csv_tables
    from ..sql.duckdb_tables import register_table
    from ..sql.duckdb_udf import register

    con = duckdb.connect()
    store = job_store(args)
    refs = {ModelRef.parse(m).name: ModelRef.parse(m) for m in as_list(args.model)}
    wanted = {name.lower() for name in models_called(query)}
    known = {function_name(n)[len("predict_"):].lower(): n for n in store.names()} | {k.lower(): k for k in refs}
    missing = sorted(wanted - set(known))
    if missing:
        raise ModelError(f"the query calls predict_{missing[0]}, but there is no model '{missing[0]}' in {store.location} "
                         f"(models: {', '.join(store.names()) or 'none yet'})")
    used, predictors = [], []
    for key in sorted(wanted):
        name = known[key]
        predictor = load_predictor(store, refs.get(name, ModelRef(name)))
        register(con, predictor)
        predictors.append(predictor)
        used.append({"name": predictor.name, "version": predictor.version})
    record.model = used[0] if len(used) == 1 else {"models": used}
    csv = csv_tables(con, predictors)  # CSV read in the one dialect, the models' numeric features as DOUBLE
    for spec in as_list(args.table):
        name, _, path = spec.partition("=")
        if not name or not path:
            raise UsageError(f"--table {spec}: use NAME=PATH")
        if is_s3(path):  # DuckDB scans it as an Arrow dataset read through pyarrow's S3 client, batch by batch
            register_table(con, name, s3_dataset(path))
            continue
        quoted_name, quoted_path = name.replace('"', '""'), path.replace("'", "''")
        try:
            if path.lower().endswith(".csv"):
                csv.create_view(con, name, path, name)
            else:
                # The same user writes the query itself: quoting keeps names and paths literal, no more.
                con.execute(f'CREATE VIEW "{quoted_name}" AS SELECT * FROM read_parquet(\'{quoted_path}\')')  # nosec B608
        except duckdb.Error as exc:  # a missing or unreadable file: the table's name, exit 3
            raise BadInputError(f"--table {name}: {engine_error(exc)}") from None
    try:
        csv.add_query_paths(con, query)
    except duckdb.Error as exc:
        raise engine_error(exc) from None
    return con


def s3_dataset(spec: str) -> Any:
    """The objects an s3:// table names (an object, a prefix or a glob), as one lazy dataset."""
    import pyarrow.dataset as ds

    files = resolve_inputs(spec)
    formats = {SUFFIXES[f.suffix.lower()] for f in files}
    if len(formats) > 1:
        raise BadInputError(f"--table {spec} mixes CSV and Parquet files")
    fmt = formats.pop()
    with translated(f"input {spec}", BadInputError):
        return ds.dataset([str(f).removeprefix("s3://") for f in files], filesystem=filesystem(),
                          format=ds.CsvFileFormat(**csvdialect.arrow_options()) if fmt == "csv" else fmt)


def engine_error(exc: Exception) -> MljobsError:
    """DuckDB's error as ours: one sentence, and the contract's exit code."""
    import duckdb

    text = str(exc).strip()
    marker = f"{InvalidRecordsError.__name__}: "
    if marker in text:  # raised by the model function: the featurizer's own sentence
        return BadInputError(f"the query's rows do not fit the model: {text.split(marker, 1)[1].splitlines()[0]}")
    first_line = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException)):
        return UsageError(f"the query is not valid: {first_line}")
    if isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException)):
        return BadInputError(f"the query failed on its input: {first_line}")
    return MljobsError(f"the query failed: {first_line}")


def execute(args: argparse.Namespace, record: RunRecord) -> None:
    import duckdb

    from ..sql.csv_tables import explain_failure
    from ..sql.duckdb_tables import job_batches
    from ..sql.scoring_mode import choose_mode

    query = query_text(args)
    record.input = query if len(query) <= 500 else query[:497] + "..."
    output_root = output_location(args.output)
    ensure_output_root(output_root)
    choose_mode(job_store(args), query, as_list(args.model))  # before any model loads
    con = connect(args, query, record)
    final = run_folder(output_root, "sql", record.run_id, partition="job")
    summary: dict[str, Any] = {"run_id": record.run_id, "query": query, "model": record.model}
    with committed_folder(final, summary) as staging:
        writer = TableWriter(staging / f"result.{args.format}", args.format)
        preview: list[dict[str, Any]] = []
        try:
            for batch in job_batches(con, query, args, record):  # ml_predict(...) and the other table functions
                writer.write(batch)
                if len(preview) < args.show:
                    preview.extend(batch.slice(0, args.show - len(preview)).to_pylist())
        except duckdb.Error as exc:
            if isinstance(exc, (duckdb.ConversionException, duckdb.InvalidInputException)):
                raise explain_failure(con) or engine_error(exc) from None  # a CSV value: named as the batch job names it
            raise engine_error(exc) from None
        finally:
            writer.close()
        record.rows = summary["rows"] = {"out": writer.rows}
    record.output = str(final)
    for row in preview:
        print(row)
    log.info("wrote %d rows to %s", writer.rows, final)


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("sql", parser(), {**DEFAULTS, **STORE_DEFAULT}, execute, argv)


if __name__ == "__main__":
    from ..sql.scoring_mode import own_process

    own_process()  # the job is the process: it may leave out what its query does not use
    sys.exit(main())
