"""Shared fixtures: a model store with the demo model trained in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from mljobs.jobs import train

pytest_plugins = ["tests.hermetic"]


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store root holding demo:1, trained once for the whole session."""
    root = tmp_path_factory.mktemp("store")
    code = train.main(["--models-dir", str(root / "models"), "--runs-dir", str(root / "runs")])
    assert code == 0
    return root


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault and fuzz suite's figures, one line per fault (see tests/fault_table.py)."""
    from tests.fault_table import FIGURES, table

    if FIGURES:
        terminalreporter.section("faults, fuzzing and refused artifacts")
        for line in table():
            terminalreporter.write_line(line)
