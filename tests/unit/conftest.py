"""Unit tests see no integration session state: the images' test tag (MLJOBS_TAG, set by the
integration tests' built_images) does not reach them."""

from __future__ import annotations

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
