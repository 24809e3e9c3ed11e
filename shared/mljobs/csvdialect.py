"""The one CSV dialect: what a cell of a CSV file or body means, at every door (batch, SQL tables,
Spark, HTTP). Each reader is configured from here, so none can disagree with another.

- UTF-8 text (a leading byte-order mark is skipped); rows end with \\n or \\r\\n.
- Delimiter ",", never sniffed; fields may be quoted with '"', a quote inside doubled ("").
  A quoted value may span lines (RFC 4180): its line ends are part of the value.
- Files have a header row naming the columns; an HTTP body may leave it out (its columns are then
  the model's features in order, SageMaker's convention).
- A cell is missing when it is exactly one of NULL_STRINGS, quoted or not (no trimming: " NA"
  is text, and a bad number).
- Anything else is the text of the cell, given to the featurizer: numbers may have spaces around
  them; booleans are true/false, 1/0, yes/no, t/f, y/n in any case; categories match exactly.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterator

import pyarrow as pa

DELIMITER, QUOTE, ENCODING = ",", '"', "utf-8"
# The spellings of a missing value (pandas' and pyarrow's own list, so data written by either
# reads back as it was meant).
NULL_STRINGS: tuple[str, ...] = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null",
)
_NULLS = frozenset(NULL_STRINGS)


def is_null(cell: str) -> bool:
    return cell in _NULLS


def cell_value(cell: str) -> str | None:
    """A cell as the featurizer sees it: None when missing, else its text as written."""
    return None if cell in _NULLS else cell


# --- pyarrow (batch job, training) ---------------------------------------------------------------

def arrow_options(column_types: dict[str, pa.DataType] | None = None, block_size: int | None = None,
                  threads: bool = True) -> dict[str, Any]:
    """read_options, parse_options and convert_options for pyarrow.csv, in the dialect;
    `threads=False` parses on the calling thread only."""
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(encoding="utf8", use_threads=threads,
                             **({"block_size": block_size} if block_size else {}))
    parse = pacsv.ParseOptions(delimiter=DELIMITER, quote_char=QUOTE, double_quote=True, escape_char=False,
                               newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types=column_types or {}, null_values=list(NULL_STRINGS),
                                   strings_can_be_null=True, quoted_strings_can_be_null=True)
    return {"read_options": read, "parse_options": parse, "convert_options": convert}


# --- DuckDB (the SQL job's CSV tables) -------------------------------------------------------------

def duckdb_read_csv(path: str, column_types: dict[str, str] | None = None) -> str:
    """A DuckDB read_csv(...) call reading `path` in the dialect; `column_types` (name -> SQL
    type) pins those columns' types, the others are detected from the data."""
    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    nulls = ", ".join(literal(s) for s in NULL_STRINGS)
    options = [f"header = true, delim = {literal(DELIMITER)}, quote = {literal(QUOTE)}, escape = {literal(QUOTE)}",
               f"nullstr = [{nulls}], allow_quoted_nulls = true, encoding = 'utf-8', strict_mode = true"]
    if column_types:
        typed = ", ".join(f"{literal(name)}: {literal(sql_type)}" for name, sql_type in column_types.items())
        options.append(f"types = {{{typed}}}")
    return f"read_csv({literal(path)}, {', '.join(options)})"


# --- Python's csv module (HTTP bodies) ---------------------------------------------------------------

def text_rows(text: str) -> Iterator[list[str]]:
    """The rows of a CSV text, each a list of its cells as written (quotes removed)."""
    return csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=DELIMITER, quotechar=QUOTE,
                      doublequote=True, strict=True)


# --- Spark -------------------------------------------------------------------------------------------

def spark_read_csv(spark: Any, path: str, multiline: bool = True) -> Any:
    """A Spark DataFrame of a CSV file in the dialect: every column read as text (Spark's reader
    knows one null spelling only), then each of NULL_STRINGS made a null; the model function
    featurizes the text as the batch job does. Spark reads each file in one task, as it must to
    find where a value spanning lines ends; `multiline=False` splits a large file among tasks,
    for a file known to have no such value (one that has may then be misread, not refused)."""
    from pyspark.sql import functions as F

    frame = (spark.read.option("header", True).option("multiLine", multiline).option("sep", DELIMITER).option("quote", QUOTE)
             .option("escape", QUOTE).option("encoding", "UTF-8").option("inferSchema", False)
             .option("nullValue", "\u0000").option("emptyValue", "").option("mode", "FAILFAST").csv(path))
    nulls = list(NULL_STRINGS)
    return frame.select([F.when(F.col(f"`{c}`").isin(nulls), F.lit(None)).otherwise(F.col(f"`{c}`")).alias(c)
                         for c in frame.columns])
