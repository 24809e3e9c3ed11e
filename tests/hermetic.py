"""A pytest plugin that makes every test own its environment (loaded by tests/conftest.py)."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

# Settings a developer's shell may hold that would change what the code under test does.
OWN_PREFIXES = ("MLJOBS_", "AWS_", "MLFLOW_", "COMPOSE_PROJECT_NAME", "DOCKER_CONTEXT")


def own_variables() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(OWN_PREFIXES)}


@pytest.fixture(scope="session", autouse=True)
def hermetic_session() -> Iterator[None]:
    """No MLJOBS_*, AWS_* or MLFLOW_* variable from the shell reaches any test or fixture."""
    saved = own_variables()
    for name in saved:
        del os.environ[name]
    yield
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def hermetic_test() -> Iterator[None]:
    """Whatever a test sets in those variables is undone after it."""
    before = own_variables()
    yield
    for name in set(own_variables()) - set(before):
        del os.environ[name]
    os.environ.update(before)
