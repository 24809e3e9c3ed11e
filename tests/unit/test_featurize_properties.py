"""Property tests: whatever a client sends, the featurizer either gives a finite-or-missing row of
the right width or an error naming a field of the schema. No other exception ever escapes."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mljobs.errors import InvalidRecordsError
from mljobs.featurize import Featurizer
from tests.unit.test_featurize import SCHEMA

NAMES = [f.name for f in SCHEMA.features]
# JSON-like values of every kind a client could send, including the awkward ones.
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["basic", "premium", "true", "false", "1e400", "nan", "-inf", " 42 ", "NA", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
records = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=8), values, max_size=6)
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_usable(matrix: np.ndarray, rows: int) -> None:
    assert matrix.shape == (rows, len(NAMES))
    assert not np.isinf(matrix).any()  # a value is a number or missing (NaN), never infinite


@PROFILE
@given(st.lists(records, min_size=1, max_size=5))
def test_any_records_either_featurize_or_name_a_field(batch):
    try:
        assert_usable(Featurizer(SCHEMA).transform_records(batch), len(batch))
    except InvalidRecordsError as exc:
        assert exc.errors and all(e.field in NAMES for e in exc.errors)
        assert all(e.row is None or 0 <= e.row < len(batch) for e in exc.errors)


text_cells = st.none() | st.text(max_size=10) | st.sampled_from(["1", "-3.5", "1e308", "1e309", "inf", "NaN", "true", "premium", "  "])


@PROFILE
@given(st.lists(st.tuples(text_cells, text_cells, text_cells), min_size=1, max_size=20))
def test_any_csv_like_table_splits_into_good_rows_and_rejects_naming_row_and_field(cells):
    """The batch path: text columns as a CSV gives them; each bad row is named, the rest score."""
    table = pa.table({name: pa.array([row[j] for row in cells], pa.string()) for j, name in enumerate(NAMES)})
    features = Featurizer(SCHEMA).transform_table(table, first_row=100)
    assert_usable(np.where(features.good_rows[:, None], features.matrix, 0.0), len(cells))
    bad_rows = {e.row for e in features.errors}
    assert all(e.field in NAMES for e in features.errors)
    assert bad_rows <= set(range(100, 100 + len(cells)))
    assert [not g for g in features.good_rows] == [100 + i in bad_rows for i in range(len(cells))]
    good = features.matrix[features.good_rows]
    assert not any(math.isinf(v) for v in good.ravel())
