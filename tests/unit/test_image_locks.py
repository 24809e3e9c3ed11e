"""The images' lock files (images/requirements/*.lock) against requirements.lock: the same pins,
every locked package in some image or named here as left out, and the three Python Dockerfiles
identical down to their own lock file, so that Docker shares the dependency layer among them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCKS = REPO / "images" / "requirements"
ROLES = ("train", "predict", "serve")

# In requirements.lock (the jobs extra, the host test environment) but in no image, and why.
IN_NO_IMAGE = {
    "pandas": "optional to lightgbm, lleaves and pyarrow; only the Spark path (on the host or a cluster) imports it",
    "prettytable": "skops declares it for model cards, which nothing here makes",
    "wcwidth": "prettytable's",
}


def pins(path: Path) -> dict[str, str]:
    """name (normalized) -> version, from a lock file of `name==version` lines."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_every_image_pin_is_the_pin_in_requirements_lock():
    locked = pins(REPO / "requirements.lock")
    for lock in sorted(LOCKS.glob("*.lock")):
        differ = {name: (version, locked.get(name)) for name, version in pins(lock).items() if locked.get(name) != version}
        assert differ == {}, f"{lock.name}: (its pin, requirements.lock's) {differ}"


def test_every_locked_package_is_in_an_image_or_left_out_for_a_reason():
    in_images = set().union(*(pins(lock) for lock in LOCKS.glob("*.lock")))
    assert set(pins(REPO / "requirements.lock")) == in_images | set(IN_NO_IMAGE)
    assert in_images.isdisjoint(IN_NO_IMAGE)


@pytest.mark.parametrize("role", ROLES)
def test_a_role_lock_adds_only_what_the_shared_layer_lacks(role):
    assert set(pins(LOCKS / f"{role}.lock")).isdisjoint(pins(LOCKS / "common.lock"))


def shared_part(role: str) -> list[str]:
    """A Dockerfile's instructions (comments left out) before it copies its own lock file."""
    lines = [line for line in (REPO / "images" / role / "Dockerfile").read_text().splitlines()
             if not line.startswith("#")]
    own = next(i for i, line in enumerate(lines) if line.startswith(f"COPY images/requirements/{role}.lock"))
    return lines[:own]


def test_the_python_images_share_their_dependency_layer_lines():
    first = shared_part(ROLES[0])
    assert any("common.lock" in line for line in first)
    for role in ROLES[1:]:
        assert shared_part(role) == first, f"images/{role}/Dockerfile differs from images/{ROLES[0]}/Dockerfile before its own lock"
