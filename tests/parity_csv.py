"""One CSV that exercises the dialect at every door: each null spelling, quoted numbers and nulls,
blank cells, spaces around numbers, an empty line, an unknown category, a quoted value spanning
lines and one bad cell, among plain demo rows."""

from __future__ import annotations

import csv
import io

from mljobs import demo
from mljobs.csvdialect import NULL_STRINGS

HEADER = ["customer_id", "age", "tenure_months", "monthly_charges", "plan", "region", "has_support"]
# (row, field) of the one bad cell: the reject every door must name.
BAD_ROW, BAD_FIELD = 7, "age"


def _quoted(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


def special_rows() -> list[list[str]]:
    rows: list[list[str]] = []
    for i, null in enumerate(NULL_STRINGS):
        # Each spelling in a numeric, a categorical and a boolean column, bare or quoted.
        cell = _quoted(null) if i % 2 else null
        rows.append([f"n{i:02d}", cell, str(3 + i), "80.5", "basic", cell, cell])
    rows[BAD_ROW][1] = "forty"
    rows += [
        ["q1", '"42"', '"12"', '"80.25"', '"premium"', '"south"', '"false"'],   # quoted numbers and text
        ["b1", "", "", "", "", "", ""],                                            # every cell blank
        ["b2", "55", "", "99.9", "standard", "", "yes"],                           # some blank
        ["s1", " 61 ", "24", " 70.5", "basic", "east", "TRUE"],                    # spaces around numbers
        ["u1", "33", "5", "45.0", "basic", "central", "no"],                       # a region never seen
        ["e1", "1e1", "0", "-0.5", "standard", "west", "1"],                       # exponent, negative
        ['"m1\r\nits second line\nand a ""third"""', "47", "30", "65.5", "premium", "east", "yes"],  # spans lines
    ]
    return rows


def plain_rows(count: int = 200) -> list[list[str]]:
    table = demo.scoring_table(rows=count, seed=31)
    columns = [table.column(name).to_pylist() for name in HEADER]
    def text(v: object) -> str:
        return "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    return [[text(column[i]) for column in columns] for i in range(count)]


def parity_csv(without_bad_row: bool = False) -> str:
    rows = special_rows() + plain_rows()
    if without_bad_row:
        rows = [r for i, r in enumerate(rows) if i != BAD_ROW]
    lines = [",".join(r) for r in [HEADER, *rows]]
    lines.insert(len(lines) // 2, "")  # an empty line: no row anywhere
    return "\n".join(lines) + "\n"


def row_count(without_bad_row: bool = False) -> int:
    return len(special_rows()) + len(plain_rows()) - (1 if without_bad_row else 0)


def row_ids(text: str) -> list[str]:
    """The customer ids of a parity CSV's rows, in order."""
    return [row[0] for row in list(csv.reader(io.StringIO(text)))[1:] if row]
