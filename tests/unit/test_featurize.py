import math

import numpy as np
import pyarrow as pa
import pytest

from mljobs.errors import InvalidRecordsError
from mljobs.featurize import Featurizer
from mljobs.schema import Feature, FeatureSchema

SCHEMA = FeatureSchema(
    (
        Feature("age", "numeric", "int64"),
        Feature("plan", "categorical", "string", ("basic", "premium")),
        Feature("support", "boolean", "bool"),
    ),
    target="churned",
    task="classification",
    classes=("no", "yes"),
)


def test_record_and_table_paths_give_identical_rows():
    records = [
        {"age": 30, "plan": "premium", "support": True},
        {"age": None, "plan": "basic", "support": False},
        {"age": 41.5, "plan": None, "support": None},
        {"age": 7, "plan": "gold", "support": True},  # unseen category: missing, as LightGBM treats it
    ]
    from_records = Featurizer(SCHEMA).transform_records(records)
    table = pa.Table.from_pylist(records, schema=pa.schema([("age", pa.float64()), ("plan", pa.string()), ("support", pa.bool_())]))
    from_table = Featurizer(SCHEMA).transform_table(table)
    assert from_table.errors == []
    np.testing.assert_array_equal(from_records, from_table.matrix)
    assert from_records[0].tolist() == [30.0, 1.0, 1.0]
    assert math.isnan(from_records[3][1])


def test_every_bad_field_is_named():
    with pytest.raises(InvalidRecordsError) as caught:
        Featurizer(SCHEMA).transform_records([{"age": "old", "support": "maybe"}])
    fields = {e.field: e.reason for e in caught.value.errors}
    assert fields == {
        "age": "expected a number, got 'old'",
        "plan": "missing",
        "support": "expected true or false, got 'maybe'",
    }


def test_strict_categories_reject_unseen_levels():
    with pytest.raises(InvalidRecordsError, match="unknown category 'gold'"):
        Featurizer(SCHEMA, strict_categories=True).transform_records([{"age": 1, "plan": "gold", "support": True}])


def test_table_rows_with_text_in_a_numeric_column_are_reported_by_row():
    table = pa.table({"age": ["12", "x", None], "plan": ["basic"] * 3, "support": [True] * 3})
    features = Featurizer(SCHEMA).transform_table(table, first_row=100)
    assert [(e.row, e.field) for e in features.errors] == [(101, "age")]
    assert features.matrix[0].tolist() == [12.0, 0.0, 1.0]
    assert np.isnan(features.matrix[1]).all()


def test_missing_column_is_named():
    with pytest.raises(InvalidRecordsError, match="'support'"):
        Featurizer(SCHEMA).transform_table(pa.table({"age": [1], "plan": ["basic"]}))


def test_a_table_of_many_rows_and_columns_lands_in_the_matrix_row_by_row():
    # More rows than one fill block, and a count that no block size divides; an infinity late
    # in the table is still named by its row.
    schema = FeatureSchema(tuple(Feature(f"x{j}", "numeric", "float64") for j in range(40)),
                           target="y", task="regression", classes=())
    rows = 30_011
    values = np.random.default_rng(3).normal(size=(rows, 40))
    values[29_999, 7] = np.inf
    table = pa.table({f"x{j}": values[:, j] for j in range(40)})
    features = Featurizer(schema).transform_table(table, first_row=5)
    assert features.matrix.flags["C_CONTIGUOUS"] and features.matrix.shape == (rows, 40)
    expected = values.copy()
    expected[29_999] = np.nan
    np.testing.assert_array_equal(features.matrix, expected)
    assert [(e.row, e.field) for e in features.errors] == [(30_004, "x7")]
