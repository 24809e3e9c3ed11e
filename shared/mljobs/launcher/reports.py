"""`mljobs models report NAME[@ALIAS|:VERSION] | --all [--output DIR] [--open]`: the report job
(the contract's `report` role) writes into a host folder as you, and --open shows the page in
your browser."""

from __future__ import annotations

import argparse
import os
import webbrowser
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from ..contract import IMAGE_USER, OUTPUT
from .engine import LauncherError, Project
from .jobs import Bind, JobSpec, describe, run_job

DEFAULT_FOLDER = Path("mljobs-reports")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mljobs models report", description=__doc__)
    p.add_argument("ref", nargs="?", help="NAME, NAME@ALIAS or NAME:VERSION")
    p.add_argument("--all", action="store_true", help="the store overview with every version's page and report")
    p.add_argument("--output", type=Path, default=DEFAULT_FOLDER, help=f"the host folder to write into (default ./{DEFAULT_FOLDER})")
    p.add_argument("--open", action="store_true", help="open the page in your web browser")
    return p


def host_path(written: str, folder: Path) -> Path:
    """The host path of a file the job wrote under the output mount."""
    inside = PurePosixPath(written.strip())
    try:
        return folder / inside.relative_to(OUTPUT.target)
    except ValueError:
        raise LauncherError(f"the report job wrote {written!r}, outside its output folder", 1) from None


def report(client: Any, project: Project, words: list[str], on_log: Callable[[str], None]) -> Path:
    args = parser().parse_args(words)
    if bool(args.ref) == bool(args.all):
        raise LauncherError("say which report: mljobs models report NAME[@ALIAS|:VERSION], or --all", 2)
    folder = args.output.expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LauncherError(f"cannot create {folder}: {exc.strerror}", 2) from None
    user = f"{os.getuid()}:{os.getgid()}" if os.getuid() != 0 else IMAGE_USER  # you own what it writes
    job_args = [args.ref or "--all", "--output", OUTPUT.target]
    spec = JobSpec("report", job_args, {OUTPUT.target: Bind(str(folder), read_only=False)}, user=user)
    result = run_job(client, project, spec, on_log)
    if result.exit_code != 0 or result.timed_out:
        raise LauncherError(describe("report", result, None), result.exit_code or 1)
    lines = [line for line in result.output.splitlines() if line.strip()]
    if not lines:
        raise LauncherError("the report job finished without naming what it wrote", 1)
    page = host_path(lines[-1], folder)
    if args.open:
        webbrowser.open(page.as_uri())
    return page
