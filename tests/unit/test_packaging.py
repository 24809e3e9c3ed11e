"""What `pip install .` puts on a machine works there: every console script runs with the base
dependencies alone (the jobs' stack, `mljobs[jobs]`, lives in the images)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
IMPORT_NAMES = {"scikit-learn": "sklearn", "prometheus-client": "prometheus_client"}


def distribution(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def jobs_only_modules() -> list[str]:
    """Import names of what `mljobs[jobs]` adds to the base dependencies."""
    base = {distribution(r) for r in PYPROJECT["project"]["dependencies"]}
    extra = {distribution(r) for r in PYPROJECT["project"]["optional-dependencies"]["jobs"]} - base
    return sorted(IMPORT_NAMES.get(name, name.replace("-", "_")) for name in extra)


# Imports of these fail in the child, as on a host with only the base dependencies installed.
BLOCKER = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Absent())
"""


@pytest.mark.parametrize("name, target", sorted(PYPROJECT["project"]["scripts"].items()))
def test_every_console_script_loads_without_the_jobs_stack(name, target):
    module, function = target.split(":")
    script = f"BLOCKED = {jobs_only_modules()!r}\n{BLOCKER}\nimport {module}\nassert callable({module}.{function})\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, f"{name} ({target}) needs the jobs' stack:\n{result.stderr[-1500:]}"


def test_the_blocker_blocks():
    script = f"BLOCKED = {jobs_only_modules()!r}\n{BLOCKER}\nimport mljobs.jobs.train\n"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode != 0
