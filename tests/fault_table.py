"""The figures of the fault and fuzz suite, gathered as the tests run and printed at the end of
the session (the tests themselves assert each figure)."""

from __future__ import annotations

from dataclasses import dataclass

FIGURES: list[Figure] = []


@dataclass(frozen=True)
class Figure:
    fault: str
    tried: int
    unit: str  # what was tried: requests, runs, artifacts...
    outcome: str  # what was counted: failed, partial outputs, refused, 5xx, marker files
    count: int
    must_be: int | None  # None: a figure to know, not a pass mark

    @property
    def holds(self) -> bool:
        return self.must_be is None or self.count == self.must_be


def record(fault: str, tried: int, unit: str, outcome: str, count: int, must_be: int | None = 0) -> Figure:
    figure = Figure(fault, tried, unit, outcome, count, must_be)
    FIGURES.append(figure)
    return figure


def table() -> list[str]:
    header = ("fault", "tried", "counted", "result", "must be")
    rows = [(f.fault, f"{f.tried:,} {f.unit}", f.outcome, f"{f.count:,}", ("-" if f.must_be is None else f"{f.must_be:,}") + ("" if f.holds else "  << FAILED"))
            for f in FIGURES]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [line(header), line(tuple("-" * w for w in widths)), *map(line, rows)]
