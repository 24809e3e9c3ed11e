"""Image sizes: the four images built from an earlier revision's Dockerfiles and lock ("before")
and from the working tree ("after"), with what the three Python images share and what a node
pulls to run them all (every distinct layer once).

    .venv/bin/python bench/image_sizes.py [--before REV]

REV defaults to HEAD; once the split lock is committed, pass the commit before it. Both sides are
built with `docker compose build` under their own tags (size-before, size-after), removed at the
end; Docker's build cache keeps the layers, so a second run takes seconds.
Target (issue 16): the serve image carries only what serving imports; the three share one layer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROLES = ("train", "predict", "serve", "lb")
PYTHON_ROLES = ROLES[:3]
# What a build reads from the checkout (the build context is filtered by .dockerignore).
BUILD_FILES = ("compose.yaml", ".dockerignore", "requirements.lock", "images", "shared/mljobs")
MB = 1e6

Step = tuple[str, int]  # (instruction, bytes) of one build step


def build(project_dir: Path, tag: str) -> None:
    env = {**os.environ, "MLJOBS_TAG": tag, "COMPOSE_PROJECT_NAME": f"mljobs-sizes-{tag}"}
    subprocess.run(["docker", "compose", "--project-directory", str(project_dir), "--profile", "jobs", "build"],
                   env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)


def history(image: str) -> list[Step]:
    """Every build step of `image`, base first."""
    out = subprocess.run(["docker", "history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", image],
                         capture_output=True, text=True, check=True).stdout
    return [(created_by, int(size)) for size, created_by in (line.split("\t", 1) for line in reversed(out.splitlines()))]


def shared_prefix(histories: list[list[Step]]) -> list[Step]:
    shared: list[Step] = []
    for steps in zip(*histories):
        if any(step != steps[0] for step in steps):
            break
        shared.append(steps[0])
    return shared


def distinct_bytes(histories: list[list[Step]]) -> int:
    """What a node downloads for all of them: a step is the same layer when all steps up to it are."""
    layers: dict[tuple[Step, ...], int] = {}
    for steps in histories:
        for i, (_, size) in enumerate(steps):
            layers[tuple(steps[: i + 1])] = size
    return sum(layers.values())


def measure(tag: str) -> dict[str, float]:
    histories = {role: history(f"mljobs-{role}:{tag}") for role in ROLES}
    shared = shared_prefix([histories[role] for role in PYTHON_ROLES])
    # Our first step installs libgomp1: the shared steps before it are the base image.
    first_own = next(i for i, (step, _) in enumerate(shared) if "libgomp1" in step)
    figures = {f"mljobs-{role}": sum(size for _, size in histories[role]) / MB for role in ROLES}
    figures["shared by train, predict, serve"] = sum(size for _, size in shared) / MB
    figures["  of which above the base image"] = sum(size for _, size in shared[first_own:]) / MB
    figures["a node pulls all four (distinct layers)"] = distinct_bytes(list(histories.values())) / MB
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="HEAD", help="the revision to compare with (default HEAD)")
    args = parser.parse_args()
    tags = {"before": "size-before", "after": "size-after"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, *BUILD_FILES],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            print(f"building the images of {args.before} and of the working tree", flush=True)
            build(Path(tmp), tags["before"])
        build(REPO, tags["after"])
        before, after = measure(tags["before"]), measure(tags["after"])
    finally:
        subprocess.run(["docker", "image", "rm", *(f"mljobs-{role}:{tag}" for role in ROLES for tag in tags.values())],
                       capture_output=True)

    print(f"\nImage sizes, MB (before: {args.before}'s Dockerfiles and lock; after: the working tree; ratio after/before)")
    print(f"  {'':<42}{'before':>9}{'after':>9}{'ratio':>9}")
    for name, was in before.items():
        print(f"  {name:<42}{was:>9.0f}{after[name]:>9.0f}   x{after[name] / was:.3f}")


if __name__ == "__main__":
    main()
