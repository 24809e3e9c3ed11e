"""Shared fixtures: a model store with the demo model trained in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from mljobs.jobs import train


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store root holding demo:1, trained once for the whole session."""
    root = tmp_path_factory.mktemp("store")
    code = train.main(["--models-dir", str(root / "models"), "--runs-dir", str(root / "runs")])
    assert code == 0
    return root
