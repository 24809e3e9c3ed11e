"""The overview and the versions' reports as plain files, for people who run no server:
`models report NAME[@ALIAS|:VERSION]` writes <output>/<name>-<version>/ (the version's page, its
report and plots); `models report --all` writes <output>/index.html and <output>/models/..."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ModelError, UsageError
from ..fsutil import atomic_write_bytes
from ..outputs import ensure_output_root
from ..store import PRODUCTION, ModelRef, ModelStore
from .collect import ModelInfo, VersionCache, VersionInfo, collect
from .html_parts import FILE_LINKS, Links
from .page import overview_page
from .recent_runs import RecentRuns
from .version_page import version_page

INDEX = "index.html"


def export_version(store: ModelStore, ref: ModelRef, output: Path) -> Path:
    """Write one version's page, report and plots to <output>/<name>-<version>/; returns its page."""
    version = store.resolve(ref)
    cache = VersionCache(store)
    info = cache.info(ref.name, version)
    if not info.verified:
        raise ModelError(f"model {ref.name}:{version} is refused: {info.problem}")
    aliases = store.aliases(ref.name)
    production = aliases.get(PRODUCTION)
    shown = [info] + ([cache.info(ref.name, production)] if production not in (None, version) else [])
    model = ModelInfo(ref.name, shown, aliases, store.alias_events(ref.name))
    ensure_output_root(output)
    folder = output / f"{ref.name}-{version}"
    _write_version(cache, model, info, folder, Links(home="", models=""))
    return folder / INDEX


def export_all(store: ModelStore, runs_folder: Path | None, output: Path) -> Path:
    """Write the overview and every version's pages; returns the overview's path."""
    cache = VersionCache(store)
    overview = collect(store, cache, RecentRuns(runs_folder) if runs_folder is not None else None)
    ensure_output_root(output)
    for model in overview.models:
        for v in model.versions:
            _write_version(cache, model, v, output / "models" / model.name / v.version, FILE_LINKS)
    atomic_write_bytes(output / INDEX, overview_page(overview, FILE_LINKS).encode())
    return output / INDEX


def _write_version(cache: VersionCache, model: ModelInfo, info: VersionInfo, folder: Path, links: Links) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for file in info.report_files:
        data = cache.report_file(model.name, info.version, file)
        if data is not None:
            atomic_write_bytes(folder / file, data)
    atomic_write_bytes(folder / INDEX, version_page(model, info, links).encode())


DEFAULT_OUTPUT = "/data/output/reports"


def add_report_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="write a version's report (or, with --all, the store overview) as files")
    report.add_argument("ref", nargs="?", help="NAME, NAME@ALIAS or NAME:VERSION")
    report.add_argument("--all", action="store_true", help="the store overview with every version's page and report")
    report.add_argument("--output", help=f"the folder to write into (default {DEFAULT_OUTPUT})")


def run_report(args: argparse.Namespace, store: ModelStore) -> str:
    """Write what was asked; returns the page to open (its path in this container)."""
    if bool(args.ref) == bool(args.all):
        raise UsageError("say which report: models report NAME[@ALIAS|:VERSION], or models report --all")
    output = Path(args.output or DEFAULT_OUTPUT)
    try:
        ensure_output_root(output)
    except UsageError as exc:
        # The models service cannot write ./data/output as you; the report service can.
        raise UsageError(f"{exc} (with compose: docker compose run --rm report {args.ref or '--all'})") from None
    if args.all:
        return str(export_all(store, Path(args.runs_dir) if args.runs_dir else None, output))
    return str(export_version(store, ModelRef.parse(args.ref), output))
