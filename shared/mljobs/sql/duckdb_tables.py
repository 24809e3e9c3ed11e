"""The table functions in DuckDB, which has no Python table function taking a subquery: each
call in the query text is replaced by a relation registered under a name of its own. For
ml_predict and ml_explain_predict that relation is an Arrow stream: the call's inner query runs
on a cursor of the same database, its batches are scored as they arrive, and the outer query
reads them as they are scored, so memory follows the batch, not the table.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any, Callable, Iterator

import duckdb
import pyarrow as pa

from ..errors import MljobsError, ModelError
from ..predictor import Predictor
from . import chosen_ref, model_choices
from .table_call import TableCall, find_calls, substitute
from .table_functions import Scoring, all_batches, check_input, evaluate, feature_importance

BATCH_ROWS = 100_000
# Python objects registered as tables on a connection (S3 datasets): a cursor sees the database's
# views but not these, so they are registered again on every cursor an inner query runs on.
_PYTHON_TABLES: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, dict[str, Any]] = weakref.WeakKeyDictionary()


def register_table(con: duckdb.DuckDBPyConnection, name: str, table: Any) -> None:
    """con.register, remembered so that the table functions' inner queries see the table too."""
    con.register(name, table)
    _PYTHON_TABLES.setdefault(con, {})[name] = table


class TableFunctions:
    """Expands ml_predict, ml_explain_predict, ml_evaluate and ml_feature_importance in a query."""

    def __init__(self, con: duckdb.DuckDBPyConnection, load: Callable[[str], Predictor], batch_rows: int = BATCH_ROWS):
        self.con = con
        self.load_model = load
        self.batch_rows = batch_rows
        self.names = (f"__mljobs_{n}" for n in itertools.count(1))
        self.failure: MljobsError | None = None  # raised by a stream while DuckDB read it
        self.used: list[Predictor] = []

    def expand(self, sql: str, con: duckdb.DuckDBPyConnection | None = None) -> str:
        """The query with every call replaced by the name of a relation holding its result."""
        con = con or self.con
        calls = find_calls(sql)
        names = []
        for call in calls:
            name = next(self.names)
            con.register(name, self.relation(call))
            names.append(name)
        return substitute(sql, calls, names)

    def predictor(self, call: TableCall) -> Predictor:
        try:
            predictor = self.load_model(call.model)
        except ModelError as exc:
            raise ModelError(f"{call.describe()}: {exc}") from None
        self.used.append(predictor)
        return predictor

    def relation(self, call: TableCall) -> Any:
        predictor = self.predictor(call)
        if call.function == "ml_feature_importance":
            return feature_importance(predictor)
        reader = self.inner_rows(call.rows_query())
        check_input(call, reader.schema, predictor)
        if call.function == "ml_evaluate":
            return evaluate(call, predictor, self.guarded(all_batches(reader)))
        scoring = Scoring(call, predictor, reader.schema)
        return pa.RecordBatchReader.from_batches(scoring.output_schema(), self.guarded(scoring.stream(all_batches(reader))))

    def inner_rows(self, query: str) -> pa.RecordBatchReader:
        """The inner query's rows as a stream, from a cursor (the connection itself will be busy
        running the outer query); its own table function calls are expanded on that cursor."""
        cursor = self.con.cursor()
        for name, table in _PYTHON_TABLES.get(self.con, {}).items():
            cursor.register(name, table)
        expanded = self.expand(query, cursor)
        return cursor.sql(expanded).to_arrow_reader(self.batch_rows)

    def guarded(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Keeps our own error (and its exit code) when DuckDB wraps it in one of its own."""
        try:
            yield from batches
        except MljobsError as exc:
            self.failure = self.failure or exc
            raise


def run_with_table_functions(con: duckdb.DuckDBPyConnection, query: str, load: Callable[[str], Predictor]) -> tuple[Iterator[pa.RecordBatch], TableFunctions]:
    """The query's result batches with the table functions expanded, and the expander (it
    knows the models it used). DuckDB's error about a failed stream becomes the stream's own."""
    functions = TableFunctions(con, load)

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            expanded = functions.expand(query)
            yield from con.sql(expanded).to_arrow_reader()
        except duckdb.Error:
            if functions.failure is not None:
                raise functions.failure from None
            raise

    return batches(), functions


def job_batches(con: duckdb.DuckDBPyConnection, query: str, args: Any, record: Any) -> Iterator[pa.RecordBatch]:
    """The SQL job's result: `args` give the store and the --model overrides of a default alias;
    the run record names every model the table functions used, beside predict_<model>'s."""
    from ..predictor import load_predictor
    from ..jobs.common import as_list
    from ..jobs.store_option import job_store

    if not find_calls(query):
        yield from con.sql(query).to_arrow_reader()
        return
    store = job_store(args)
    chosen = model_choices(as_list(args.model))
    loaded: dict[str, Predictor] = {}

    def load(text: str) -> Predictor:
        ref = chosen_ref(text, chosen)
        if str(ref) not in loaded:
            loaded[str(ref)] = load_predictor(store, ref)
        return loaded[str(ref)]

    batches, functions = run_with_table_functions(con, query, load)
    first = True
    for batch in batches:
        if first:
            first = False
            note_models(record, functions.used)
        yield batch
    if first:
        note_models(record, functions.used)


def note_models(record: Any, used: list[Predictor]) -> None:
    """Adds the table functions' models to those the record already names."""
    current: dict[str, Any] = record.model if isinstance(record.model, dict) else {}
    models = list(current.get("models", [dict(current)] if current.get("name") else []))
    for predictor in used:
        entry = {"name": predictor.name, "version": predictor.version}
        if entry not in models:
            models.append(entry)
    # In place: the job's summary holds the same dict.
    current.clear()
    current.update(models[0] if len(models) == 1 else {"models": models})
    record.model = current
