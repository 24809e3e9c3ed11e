"""Unit tests see no integration session state: the images' test tag (MLJOBS_TAG, set by the
integration tests' built_images) does not reach them."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_image_tag_of_a_test_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLJOBS_TAG", raising=False)
