"""Finding BigQuery-ML-like table function calls in SQL text, for engines that have no Python
table functions taking a subquery (DuckDB) or whose planner we do not extend (Spark):

    ml_predict('model[@alias|:version]', (SELECT ...) | TABLE t [, threshold => 0.6])
    ml_explain_predict('model', (SELECT ...) [, top_k => 3] [, threshold => 0.6])
    ml_evaluate('model', (SELECT ...))
    ml_feature_importance('model')

Options may also be written as BigQuery ML writes them, STRUCT(3 AS top_k_features), or as a
bare number in third place (threshold for ml_predict, top_k for ml_explain_predict). Strings
('...', DuckDB's $$...$$ and $tag$...$tag$, Spark's backslash escapes), quoted identifiers and
comments are skipped, so a function name inside them is left alone; comments are blanked out
before the arguments are read, so one may sit anywhere a space may.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import UsageError

FUNCTIONS = ("ml_predict", "ml_explain_predict", "ml_evaluate", "ml_feature_importance")
CALL = re.compile(r"(ml_predict|ml_explain_predict|ml_evaluate|ml_feature_importance)\s*\(", re.IGNORECASE)
# The options each function takes, and BigQuery ML's longer spellings of them.
OPTIONS = {
    "ml_predict": ("threshold",),
    "ml_explain_predict": ("top_k", "threshold"),
    "ml_evaluate": (),
    "ml_feature_importance": (),
}
POSITIONAL = {"ml_predict": "threshold", "ml_explain_predict": "top_k"}
SPELLINGS = {"top_k_features": "top_k"}
NAMED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:=>|:=)\s*(.+)$", re.DOTALL)
STRUCT = re.compile(r"^struct\s*\((.*)\)$", re.IGNORECASE | re.DOTALL)
AS_NAME = re.compile(r"^(.+?)\s+as\s+([A-Za-z_][A-Za-z0-9_]*)$", re.IGNORECASE | re.DOTALL)
TABLE_ARG = re.compile(r"^table\s+(.+)$", re.IGNORECASE | re.DOTALL)
IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_$.\"]")


@dataclass
class TableCall:
    """One call: where it is in the text, the model reference, its input query and options."""

    function: str
    start: int
    end: int  # one past the closing parenthesis
    model: str
    query: str | None = None
    options: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.function}('{self.model}')"

    def rows_query(self) -> str:
        """The query whose rows the function reads (every function but ml_feature_importance has one)."""
        if self.query is None:
            raise UsageError(f"{self.describe()} reads no rows")
        return self.query


DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
WORD_CHAR = re.compile(r"[A-Za-z0-9_$]")


def skip_quoted(sql: str, i: int, backslash: bool = False) -> int:
    """The index after the string, quoted identifier or comment starting at i (i if none does).
    `backslash` (Spark): a backslash in a '...' or "..." string escapes the next character, and
    $ quotes nothing; otherwise (DuckDB) only an E'...' string takes backslash escapes."""
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        if end < 0:
            raise UsageError("the query is not valid: a /* comment is never closed")
        return end + 2
    # A $ inside a name (price$usd) starts no string.
    dollar_quoted = not backslash and sql.startswith("$", i) and not WORD_CHAR.match(sql[i - 1:i])
    dollar = DOLLAR_QUOTE.match(sql, i) if dollar_quoted else None
    if dollar:
        end = sql.find(dollar.group(), dollar.end())
        if end < 0:
            raise UsageError(f"the query is not valid: a {dollar.group()} string is never closed")
        return end + len(dollar.group())
    quote = sql[i]
    if quote not in "'\"`":
        return i
    escapes = backslash and quote != "`" or quote == "'" and _escape_string_prefix(sql, i)
    j = i + 1
    while True:
        j = sql.find(quote, j)
        if j < 0:
            raise UsageError(f"the query is not valid: a {quote} quote is never closed")
        if escapes and _escaped(sql, i + 1, j):
            j += 1
            continue
        if sql.startswith(quote * 2, j):  # a doubled quote stands for itself
            j += 2
            continue
        return j + 1


def _escape_string_prefix(sql: str, i: int) -> bool:
    """Whether the quote at i opens one of DuckDB's E'...' strings (E alone, not a name's end)."""
    return i >= 1 and sql[i - 1] in "eE" and not WORD_CHAR.match(sql[i - 2:i - 1])


def _escaped(sql: str, start: int, j: int) -> bool:
    """Whether sql[j] follows an odd number of backslashes (not counting before `start`)."""
    slashes = 0
    while j - slashes - 1 >= start and sql[j - slashes - 1] == "\\":
        slashes += 1
    return slashes % 2 == 1


def without_comments(sql: str, backslash: bool = False) -> str:
    """The text with each comment replaced by as many spaces (its line ends kept), so that every
    position in it is the same as in `sql`."""
    out, last, i = [], 0, 0
    while i < len(sql):
        after = skip_quoted(sql, i, backslash)
        if after == i:
            i += 1
            continue
        if sql.startswith(("--", "/*"), i):
            out += [sql[last:i], re.sub(r"[^\r\n]", " ", sql[i:after])]
            last = after
        i = after
    return "".join(out + [sql[last:]])


def find_calls(sql: str, backslash: bool = False) -> list[TableCall]:
    """The table function calls at this level of the text (calls inside their arguments are
    found when those arguments are expanded in turn). Their positions are those in `sql`; their
    queries are as written, without comments. `backslash`: Spark's string escapes."""
    sql = without_comments(sql, backslash)
    calls, i = [], 0
    while i < len(sql):
        after = skip_quoted(sql, i, backslash)
        if after != i:
            i = after
            continue
        match = CALL.match(sql, i)
        if match and (i == 0 or not IDENTIFIER_CHAR.match(sql[i - 1])):
            call = parse_call(sql, match.group(1).lower(), i, match.end(), backslash)
            calls.append(call)
            i = call.end
            continue
        i += 1
    return calls


def split_arguments(sql: str, open_paren: int, function: str, backslash: bool = False) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose '(' ends at open_paren, and the index past its ')'."""
    args, depth, start, i = [], 0, open_paren, open_paren
    while i < len(sql):
        after = skip_quoted(sql, i, backslash)
        if after != i:
            i = after
            continue
        char = sql[i]
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                args.append(sql[start:i].strip())
                return [a for a in args if a] if args != [""] else [], i + 1
            depth -= 1
        elif char == "," and depth == 0:
            args.append(sql[start:i].strip())
            start = i + 1
        i += 1
    raise UsageError(f"the query is not valid: {function}( is never closed")


def parse_call(sql: str, function: str, start: int, open_paren: int, backslash: bool = False) -> TableCall:
    args, end = split_arguments(sql, open_paren, function, backslash)
    if not args:
        raise UsageError(f"{function} needs a model: {function}('name', (SELECT ...))")
    call = TableCall(function, start, end, model_argument(function, args[0], backslash))
    rest = args[1:]
    if function != "ml_feature_importance":
        if not rest:
            raise UsageError(f"{call.describe()} needs its rows: a (SELECT ...) or TABLE name as the second argument")
        call.query, rest = source_argument(call, rest[0], backslash), rest[1:]
    for position, arg in enumerate(rest):
        for name, value in option_arguments(call, arg, position, backslash):
            if name in call.options:
                raise UsageError(f"{call.describe()}: argument '{name}' is given twice")
            call.options[name] = value
    return call


def model_argument(function: str, text: str, backslash: bool = False) -> str:
    if len(text) < 2 or text[0] != "'" or skip_quoted(text, 0, backslash) != len(text):
        raise UsageError(f"{function}: the first argument must be the model as a string, like 'churn@production', not {text[:40]}")
    return text[1:-1].replace("''", "'")


def source_argument(call: TableCall, text: str, backslash: bool = False) -> str:
    """The query whose rows the function reads: (SELECT ...) as written, or TABLE t."""
    table = TABLE_ARG.match(text)
    if table:
        # The same user writes the whole query: this is their text, rearranged.
        return f"SELECT * FROM {table.group(1).strip()}"  # nosec B608
    if text.startswith("(") and text.endswith(")"):
        _, end = split_arguments(text, 1, call.function, backslash)
        if end == len(text) and text[1:-1].strip():
            return text[1:-1].strip()
    raise UsageError(f"{call.describe()}: the second argument must be a (SELECT ...) or TABLE name, not {text[:40]}")


def option_arguments(call: TableCall, text: str, position: int, backslash: bool = False) -> list[tuple[str, float]]:
    """name => value, STRUCT(value AS name, ...), or a bare number in the function's positional slot."""
    struct = STRUCT.match(text)
    if struct:
        pairs = []
        for part in split_arguments(struct.group(1) + ")", 0, "STRUCT", backslash)[0]:
            named = AS_NAME.match(part)
            if not named:
                raise UsageError(f"{call.describe()}: write STRUCT options as value AS name, not {part[:40]}")
            pairs.append(option(call, named.group(2), named.group(1)))
        return pairs
    named = NAMED.match(text)
    if named:
        return [option(call, named.group(1), named.group(2))]
    slot = POSITIONAL.get(call.function)
    if slot is None or position > 0:
        raise UsageError(f"{call.describe()}: unexpected argument {text[:40]} (options: {', '.join(OPTIONS[call.function]) or 'none'})")
    return [option(call, slot, text)]


def option(call: TableCall, name: str, value: str) -> tuple[str, float]:
    key = SPELLINGS.get(name.lower(), name.lower())
    allowed = OPTIONS[call.function]
    if key not in allowed:
        raise UsageError(f"{call.describe()} has no argument '{name}' (arguments: {', '.join(allowed) or 'none'})")
    try:
        number = float(value.strip())
    except ValueError:
        raise UsageError(f"{call.describe()}: argument '{name}' must be a number, not {value.strip()[:40]}") from None
    if not math.isfinite(number):
        raise UsageError(f"{call.describe()}: argument '{name}' must be a finite number, not {value.strip()[:40]}")
    if key == "threshold" and not 0 <= number <= 1:
        raise UsageError(f"{call.describe()}: threshold must be between 0 and 1, not {value.strip()}")
    if key == "top_k" and (number < 1 or number != int(number)):
        raise UsageError(f"{call.describe()}: top_k must be a whole number of at least 1, not {value.strip()}")
    return key, number


def substitute(sql: str, calls: list[TableCall], names: list[str], quote: str = '"') -> str:
    """The text with each call replaced by the name (quoted as the engine quotes identifiers:
    " in DuckDB, ` in Spark) of the relation that holds its result."""
    out: list[str] = []
    last = 0
    for call, name in zip(calls, names):
        out += [sql[last:call.start], quote + name.replace(quote, quote * 2) + quote]
        last = call.end
    return "".join(out + [sql[last:]])
