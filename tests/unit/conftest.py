"""Unit tests see no integration session state: the images' test tag (MLJOBS_TAG, set by the
integration tests' built_images) does not reach them."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(autouse=True)
def no_image_tag_of_a_test_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLJOBS_TAG", raising=False)


@pytest.fixture
def client(demo_store):
    """A Flask test client of a server on the session's demo store (the serving tests' own)."""
    from mljobs.serve.app import create_app

    app = create_app({"MODELS_DIR": str(demo_store / "models"), "MODEL": "demo", "POLL_SECONDS": "3600"})
    yield app.test_client()
    app.extensions["mljobs.holder"].stop()


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (2 cores) for every unit test that needs one: its JVM starts once."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local mode stays on the loopback
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need this environment's packages
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("mljobs-unit-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
