"""Property tests on the app in-process: any JSON body, on any scoring route, is answered 200 or
a 4xx whose error names what was wrong; never a 5xx (which would mean an exception escaped)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mljobs.serve.app import create_app
from tests.fault_table import record
from tests.unit.test_serve import GOOD
from tests.unit.test_featurize_properties import values

STATUSES: Counter = Counter()
ROUTES = ["/predict", "/invocations", "/v2/models/demo/infer"]
# Bodies near the real shapes (so they reach the featurizer), and anything at all.
records = st.fixed_dictionaries({k: st.just(v) | values for k, v in GOOD.items()}) | st.dictionaries(st.text(max_size=8), values, max_size=4)
bodies = (
    records
    | st.lists(records, max_size=3)
    | st.builds(lambda r: {"dataframe_records": r}, st.lists(records, max_size=3))
    | st.builds(lambda r: {"instances": r}, st.lists(records, max_size=3))
    | st.builds(lambda cols, data: {"dataframe_split": {"columns": cols, "data": data}}, st.lists(st.sampled_from(list(GOOD)), max_size=4), st.lists(st.lists(values, max_size=4), max_size=3))
    | st.builds(lambda data: {"inputs": [{"name": n, "datatype": "BYTES", "shape": [len(data)], "data": data} for n in GOOD]}, st.lists(values, max_size=3))
    | values
)


@pytest.fixture(scope="module")
def client(demo_store):
    app = create_app({"MODELS_DIR": str(demo_store / "models"), "MODEL": "demo", "POLL_SECONDS": "3600"})
    yield app.test_client()
    app.extensions["mljobs.holder"].stop()
    record("generated JSON bodies (hypothesis), in-process", sum(STATUSES.values()), "requests", "5xx",
           sum(n for code, n in STATUSES.items() if code >= 500))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_any_json_body_gets_a_200_or_a_4xx_that_says_why(client, route, body):
    reply = client.post(route, data=json.dumps(body, allow_nan=True), content_type="application/json")
    STATUSES[reply.status_code] += 1
    assert reply.status_code == 200 or 400 <= reply.status_code < 500, (reply.status_code, reply.get_data(as_text=True))
    if reply.status_code != 200:
        assert reply.get_json()["error"]
