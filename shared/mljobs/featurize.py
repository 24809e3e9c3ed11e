"""The one featurizer: records or Arrow tables in, a float64 matrix in schema order out.

Numeric and boolean features become their value (missing: NaN); a categorical feature becomes
the index of its level in the schema (missing or unseen: NaN, which the model treats as missing).
Every door (training, batch, HTTP, SQL) goes through this module, so they cannot disagree.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import FieldError, FieldErrors, InvalidRecordsError
from .schema import BOOLEAN, CATEGORICAL, NUMERIC, Feature, FeatureSchema

# Columns put into the matrix together: 8 float64 are one 64-byte cache line of a row, and a
# table's columns wait for the matrix only this many at a time (memory: 8 columns, not all).
FILL_COLUMNS = 8
# The bytes of those columns filled at a time (_fill): they and their lines of the matrix, twice
# this, stay within one core's L2 cache.
FILL_BLOCK_BYTES = 512 << 10

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


@dataclass
class Features:
    """A featurized batch; rows named in `errors` hold NaN and must not be scored.
    `unseen` counts, per column, categories the model never saw (scored as missing)."""

    matrix: np.ndarray
    errors: list[FieldError]
    unseen: dict[str, int]
    first_row: int = 0

    @cached_property
    def good_rows(self) -> np.ndarray:
        """A mask of the rows that may be scored (computed once: batch and predictor both ask)."""
        good = np.ones(len(self.matrix), dtype=bool)
        good[[e.row - self.first_row for e in self.errors if e.row is not None]] = False
        return good


class Featurizer:
    def __init__(self, schema: FeatureSchema, strict_categories: bool = False):
        self.schema = schema
        self.strict_categories = strict_categories
        self._codes = [
            {level: float(i) for i, level in enumerate(f.categories)} for f in schema.features
        ]

    # --- one record at a time: the serving fast path, no pandas, no Arrow -------------------

    def record_row(self, record: Mapping[str, Any], row: int | None = None) -> tuple[list[float], list[FieldError]]:
        values: list[float] = []
        errors: list[FieldError] = []
        for feature, codes in zip(self.schema.features, self._codes):
            if feature.name not in record:
                errors.append(FieldError(feature.name, "missing", row))
                values.append(math.nan)
                continue
            value, reason = _convert(feature, codes, record[feature.name], self.strict_categories)
            if reason:
                errors.append(FieldError(feature.name, reason, row))
            values.append(value)
        return values, errors

    def transform_records(self, records: Sequence[Any]) -> np.ndarray:
        """Featurize records, raising InvalidRecordsError naming the bad fields (bounded)."""
        matrix = np.empty((len(records), len(self._codes)), dtype=np.float64)
        errors = FieldErrors()
        many = len(records) > 1
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                errors.add(FieldError("(record)", "expected an object of feature values", i if many else None))
                continue
            values, record_errors = self.record_row(record, i if many else None)
            matrix[i] = values
            for error in record_errors:
                errors.add(error)
        errors.raise_if_any()
        return matrix

    def transform_columns(self, columns: Mapping[str, Sequence[Any]], rows: int) -> np.ndarray:
        """Featurize named columns of `rows` values (v2 tensors, MLflow `inputs`) without building
        a record per row; a missing feature is one error for the whole column, not one per row."""
        missing = [FieldError(f.name, "missing") for f in self.schema.features if f.name not in columns]
        if missing:
            raise InvalidRecordsError(missing)
        matrix = np.empty((rows, len(self._codes)), dtype=np.float64)
        errors = FieldErrors()
        many = rows > 1
        for j, (feature, codes) in enumerate(zip(self.schema.features, self._codes)):
            values = columns[feature.name]
            for i, value in enumerate(values):
                matrix[i, j], reason = _convert(feature, codes, value, self.strict_categories)
                if reason:
                    errors.add(FieldError(feature.name, reason, i if many else None))
        errors.raise_if_any()
        return matrix

    # --- whole columns: batch, training and SQL -------------------------------------------

    def transform_table(self, table: pa.Table | pa.RecordBatch, first_row: int = 0) -> Features:
        """Featurize a table; bad values are reported per row (numbered from `first_row`)."""
        present = set(table.column_names)  # (a list built anew on every access)
        missing = [f.name for f in self.schema.features if f.name not in present]
        if missing:
            raise InvalidRecordsError([FieldError(name, "column missing from the input") for name in missing])
        features = self.schema.features
        matrix = np.empty((table.num_rows, len(features)), dtype=np.float64)
        group: list[np.ndarray] = []  # the columns not yet in the matrix
        errors: list[FieldError] = []
        unseen: dict[str, int] = {}
        for j, feature in enumerate(features):
            column = table.column(feature.name)
            if isinstance(column, pa.ChunkedArray):
                column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()  # (it copies even one chunk)
            values, bad = self._column(feature, j, column)
            if feature.kind == NUMERIC:
                bad += [(int(i), "expected a finite number, got infinity") for i in np.flatnonzero(np.isinf(values))]
            errors.extend(FieldError(feature.name, reason, first_row + int(i)) for i, reason in bad)
            if feature.kind == CATEGORICAL and not self.strict_categories:
                # Present in the input but no level of the model's: NaN in a row that has a value.
                count = int(np.count_nonzero(np.isnan(values))) - column.null_count
                if count:
                    unseen[feature.name] = count
            group.append(values)
            if len(group) == FILL_COLUMNS or j == len(features) - 1:
                _fill(matrix, j + 1 - len(group), group)
                group = []
        if errors:
            matrix[np.unique([e.row - first_row for e in errors if e.row is not None])] = np.nan
            errors.sort(key=lambda e: (e.row or 0, e.field))
        return Features(matrix, errors, unseen, first_row)

    def _column(self, feature: Feature, j: int, column: pa.Array) -> tuple[np.ndarray, list[tuple[int, str]]]:
        kind, t = feature.kind, column.type
        if kind == NUMERIC and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)):
            return _to_float(column), []
        if kind == BOOLEAN and (pa.types.is_boolean(t) or pa.types.is_null(t)):
            return _to_float(column), []
        if kind == CATEGORICAL:
            levels = column.cast(pa.string()) if not pa.types.is_string(t) else column
            codes = pc.index_in(levels, value_set=pa.array(feature.categories, pa.string()))
            out = _to_float(codes)
            if not self.strict_categories:
                return out, []
            unseen = pc.and_(pc.is_null(codes), pc.is_valid(levels))
            rows = np.flatnonzero(unseen.to_numpy(zero_copy_only=False))
            return out, [(int(i), f"unknown category {levels[int(i)].as_py()!r}") for i in rows]
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            fast = _text_column(kind, column)
            if fast is not None:
                return fast, []
        # Mixed or malformed values: convert value by value, naming each bad row.
        codes = self._codes[j]
        out = np.empty(len(column), dtype=np.float64)
        bad = []
        for i, value in enumerate(column.to_pylist()):
            out[i], reason = _convert(feature, codes, value, self.strict_categories)
            if reason:
                bad.append((i, reason))
        return out, bad


def _text_column(kind: str, column: pa.Array) -> np.ndarray | None:
    """Vectorized parse of a text column (CSV input) when every value is well formed, else None."""
    if kind == NUMERIC:
        try:
            return _to_float(column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    words = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    true, false = pc.is_in(words, pa.array(sorted(_TRUE))), pc.is_in(words, pa.array(sorted(_FALSE)))
    if pc.any(pc.and_(pc.is_valid(words), pc.invert(pc.or_(true, false)))).as_py():
        return None
    return np.where(pc.is_null(words).to_numpy(zero_copy_only=False), np.nan, true.to_numpy(zero_copy_only=False).astype(np.float64))


def _fill(matrix: np.ndarray, first: int, columns: list[np.ndarray]) -> None:
    """Put `columns` into the C-ordered `matrix` from column `first` on, a block of rows at a
    time: the block's cache lines stay in cache while each column is written into them, where
    column by column over the whole matrix would fetch each line once per column."""
    step = max(256, FILL_BLOCK_BYTES // (8 * len(columns)))
    for start in range(0, len(matrix), step):
        block = matrix[start:start + step]
        for j, values in enumerate(columns, first):
            block[:, j] = values[start:start + step]


def _to_float(column: pa.Array) -> np.ndarray:
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _convert(feature: Feature, codes: dict[str, float], value: Any, strict: bool) -> tuple[float, str]:
    """One value to its float; returns (value, "") or (NaN, reason)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan, ""
    kind = feature.kind
    if kind == NUMERIC:
        if isinstance(value, bool):
            return math.nan, f"expected a number, got {_show(value)}"
        number = _number(value)
        if number is None:
            return math.nan, f"expected a number, got {_show(value)}"
        if math.isinf(number):
            return math.nan, "expected a finite number, got infinity"
        return number, ""
    if kind == BOOLEAN:
        if isinstance(value, bool):
            return float(value), ""
        if isinstance(value, (int, float)) and value in (0, 1):
            return float(value), ""
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return float(value.strip().lower() in _TRUE), ""
        return math.nan, f"expected true or false, got {_show(value)}"
    if isinstance(value, (dict, list)):
        return math.nan, f"expected a category, got {_show(value)}"
    code = codes.get(value if isinstance(value, str) else str(value))
    if code is None:
        return math.nan, (f"unknown category {_show(value)}" if strict else "")
    return code, ""


def _number(value: Any) -> float | None:
    try:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value) if value.strip() else math.nan
    except OverflowError:  # an integer beyond float range
        return math.inf
    except ValueError:
        return None
    return None


# reprlib stops at a few levels: a value nested a thousand deep is shown, not recursed into.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 40, 40


def _show(value: Any) -> str:
    text = _SHORT.repr(value) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 40 else text[:37] + "..."
