"""A newcomer's first hour, as written: an ordinary user in the `docker` group, a copy of this
checkout in their home, the README's two commands and then the README's tour, line by line as
the README says them (parsed from it, so the test breaks when the README drifts). Every line
succeeds, the predictions belong to that user, and that user can delete everything the jobs wrote.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, free_port, remove_labelled

pytestmark = pytest.mark.integration

LOCAL_8080 = re.compile(r"\b(localhost|127\.0\.0\.1):8080\b")


def readme_commands(heading: str) -> list[str]:
    """The commands of the first ```sh block under `## heading`, continued lines joined."""
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    commands = re.sub(r"\\\n\s*", "", block).splitlines()
    return [c for c in commands if c.strip()]


@dataclass
class Newcomer:
    name: str
    uid: int
    checkout: Path
    env: dict[str, str]

    def __call__(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """`command` in bash, as this user, in the checkout, with nothing but self.env."""
        return subprocess.run(
            ["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in self.env.items()),
             "bash", "-c", command],
            cwd=self.checkout, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )


def copy_checkout(into: Path) -> None:
    """The working tree as it is, committed or not (what a clone of it would hold), minus ignored files."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # tracked files deleted in the working tree are listed too
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


@pytest.fixture(scope="module")
def newcomer(built_images):
    name = f"mljobs-nc-{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--create-home", "--groups", "docker", "--shell", "/bin/bash", name],
                   check=True, capture_output=True)
    account = pwd.getpwnam(name)
    checkout = Path(account.pw_dir) / "mljobs"
    project = f"mljobs-newcomer-{secrets.token_hex(4)}"
    try:
        copy_checkout(checkout)
        subprocess.run(["chown", "-R", f"{name}:{name}", str(checkout)], check=True)
        env = {"HOME": account.pw_dir, "USER": name, "LOGNAME": name, "SHELL": "/bin/bash",
               "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",  # what a login gives an ordinary user
               "COMPOSE_PROJECT_NAME": project, "MLJOBS_PORT": str(free_port()), "MLJOBS_LB_PORT": str(free_port()),
               "MLJOBS_TAG": built_images}  # this run's images, already built
        if "DOCKER_HOST" in os.environ:  # the machine's engine, wherever the tests were told it is
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        yield Newcomer(name, account.pw_uid, checkout, env)
    finally:
        subprocess.run(["docker", "compose", "--project-directory", str(checkout), "-p", project, "--profile", "jobs",
                        "down", "--volumes", "--remove-orphans", "--timeout", "5"],
                       capture_output=True, stdin=subprocess.DEVNULL)
        remove_labelled(f"com.docker.compose.project={project}")
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def test_the_readme_two_commands_then_the_tour_work_for_an_ordinary_user(newcomer):
    two = readme_commands("The two commands")
    assert two[0].startswith("scripts/bootstrap && docker compose run --rm train"), two
    first = newcomer(two[0])
    assert first.returncode == 0, first.stderr[-3000:]
    assert (newcomer.checkout / ".env").read_text().count(f"MLJOBS_UID={newcomer.uid}\n") == 1

    env_file = (newcomer.checkout / ".env").read_text()
    again = newcomer("scripts/bootstrap")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (newcomer.checkout / ".env").read_text() == env_file  # a second run changes nothing
    assert [line for line in again.stderr.splitlines() if "ready:" not in line] == []

    tour = readme_commands("A tour")
    assert len(tour) >= 6 and any(c.startswith("curl") for c in tour), tour
    for command in tour:
        if command.startswith("curl"):
            assert LOCAL_8080.search(command), command
            command = LOCAL_8080.sub(f"localhost:{newcomer.env['MLJOBS_PORT']}", command)
        result = newcomer(command)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        if command.startswith("curl"):
            assert '"predictions"' in result.stdout, result.stdout[-1000:]
        if " sql " in command:
            assert "c08-000000" in result.stdout, result.stdout[-1000:]

    output = newcomer.checkout / "data" / "output"
    [predictions] = output.glob("model=demo/date=*/run=*/predictions.parquet")
    written = [p for p in output.rglob("*") if p.name != ".gitkeep"]
    assert any("job=sql" in str(p) for p in written)
    assert {p.stat().st_uid for p in written} == {newcomer.uid} == {predictions.stat().st_uid}

    removed = newcomer("find data/output -mindepth 1 -maxdepth 1 -exec rm -rf {} +")
    assert removed.returncode == 0, removed.stderr
    assert list(output.iterdir()) == []
