"""The feature schema: what a model expects, inferred once from the training data.

It is saved with every model version as schema.json and is the only source the featurizer uses,
so training, batch prediction, serving and SQL all see the same features.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import BadInputError

NUMERIC, CATEGORICAL, BOOLEAN = "numeric", "categorical", "boolean"
CLASSIFICATION, REGRESSION = "classification", "regression"
SCHEMA_FORMAT = 1
# A categorical column with more levels than this is almost surely an id or free text.
MAX_CATEGORIES = 10_000
# A text column whose values are nearly all numbers is a numeric column with typos in it.
NUMERIC_TEXT_SHARE = 0.9
NUMBER_PATTERN = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    dtype: str
    categories: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.kind != CATEGORICAL:
            del out["categories"]
        else:
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]
    target: str
    task: str
    classes: tuple[Any, ...] = ()
    format: int = field(default=SCHEMA_FORMAT)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": self.format,
                "target": self.target,
                "task": self.task,
                "classes": list(self.classes),
                "features": [f.as_dict() for f in self.features],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        raw = json.loads(text)
        if raw.get("format") != SCHEMA_FORMAT:
            raise ValueError(f"unsupported schema format {raw.get('format')!r}")
        features = tuple(
            Feature(f["name"], f["kind"], f["dtype"], tuple(f.get("categories", ())))
            for f in raw["features"]
        )
        return cls(features, raw["target"], raw["task"], tuple(raw["classes"]))


def kind_of(name: str, arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return BOOLEAN
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return NUMERIC
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_dictionary(arrow_type):
        return CATEGORICAL
    if pa.types.is_null(arrow_type):
        raise BadInputError(f"column '{name}' is empty in every row; drop it or fill it")
    raise BadInputError(f"column '{name}' has type {arrow_type}, which is not numeric, boolean or text")


def infer_feature(name: str, column: pa.ChunkedArray) -> Feature:
    kind = kind_of(name, column.type)
    if column.null_count == len(column):
        raise BadInputError(f"column '{name}' is empty in every row; drop it or fill it")
    if kind != CATEGORICAL:
        return Feature(name, kind, str(column.type))
    text = column.cast(pa.string())
    check_not_numeric_with_typos(name, text)
    levels = text.unique().drop_null().to_pylist()
    if len(levels) > MAX_CATEGORIES:
        raise BadInputError(
            f"column '{name}' has {len(levels)} distinct text values; "
            "an id or free text cannot be a feature (drop it with --drop)"
        )
    return Feature(name, kind, "string", tuple(sorted(levels)))


def check_not_numeric_with_typos(name: str, text: pa.ChunkedArray) -> None:
    is_number = pc.match_substring_regex(text, NUMBER_PATTERN)
    numbers, present = pc.sum(is_number).as_py() or 0, len(text) - text.null_count
    if present and numbers < present and numbers >= NUMERIC_TEXT_SHARE * present:
        row = pc.index(pc.fill_null(is_number, True), False).as_py()
        raise BadInputError(
            f"column '{name}' holds numbers except in row {row}: {text[row].as_py()!r} is not a number"
        )


def infer_task(target: str, column: pa.ChunkedArray, task: str) -> str:
    if task != "auto":
        return task
    if pa.types.is_floating(column.type):
        return REGRESSION
    if pa.types.is_integer(column.type) and len(column.unique()) > 20:
        return REGRESSION
    return CLASSIFICATION


def infer_schema(table: pa.Table, target: str, task: str = "auto", features: list[str] | None = None) -> FeatureSchema:
    """Infer the schema of `table`; `features` (default: every column but the target) in order."""
    if target not in table.column_names:
        raise BadInputError(
            f"target column '{target}' is not in the data (columns: {', '.join(table.column_names)})"
        )
    names = features if features is not None else [c for c in table.column_names if c != target]
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise BadInputError(f"feature column '{missing[0]}' is not in the data")
    if not names:
        raise BadInputError("no feature columns: the data has only the target column")
    target_column = table.column(target)
    task = infer_task(target, target_column, task)
    classes: tuple[Any, ...] = ()
    if task == CLASSIFICATION:
        classes = tuple(sorted(target_column.unique().drop_null().to_pylist()))
        if len(classes) < 2:
            raise BadInputError(
                f"target column '{target}' has {len(classes)} class(es); classification needs at least 2"
            )
    elif not (pa.types.is_integer(target_column.type) or pa.types.is_floating(target_column.type)):
        raise BadInputError(f"target column '{target}' is {target_column.type}; regression needs numbers")
    return FeatureSchema(
        tuple(infer_feature(n, table.column(n)) for n in names), target, task, classes
    )
