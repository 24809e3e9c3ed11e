"""Model store commands: list, show, promote, promote-if-better, rollback, and the run history
(python -m mljobs.jobs.models)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from ..errors import UsageError
from ..estimators.native_lightgbm import NATIVE_FILE
from ..mlflow_import import add_import_command, run_import
from ..overview.export import add_report_command, run_report
from ..explain_columns import global_importance, print_importance
from ..metric_direction import is_better, main_metric
from ..predictor import METADATA_FILE
from ..runs import RunLog, RunRecord
from ..store import LATEST, PRODUCTION, ModelRef, ModelStore
from .store_option import STORE_DEFAULT, add_store_flag, job_store
from .common import add_common_flags, run_job


def parser() -> argparse.ArgumentParser:
    # Answers go to stdout (the launcher parses them as JSON); logs and errors go to stderr.
    p = argparse.ArgumentParser(prog="models", description="Look at and move models in the store.")
    add_common_flags(p)
    add_store_flag(p)
    sub = p.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="every model with its versions and aliases")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = sub.add_parser("show", help="one version: metrics, estimator, aliases (verifies its files)")
    show.add_argument("ref", help="NAME, NAME@ALIAS or NAME:VERSION")
    show.add_argument("--json", action="store_true")
    promote = sub.add_parser("promote", help="point an alias at a version")
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("--alias", default=PRODUCTION, help="default: production")
    gate = sub.add_parser("promote-if-better", help="promote the latest version if its held-out metric is at least as good")
    gate.add_argument("name")
    gate.add_argument("--alias", default=PRODUCTION, help="default: production")
    gate.add_argument("--metric", help="default: roc_auc (else accuracy) for classifiers, rmse for regressors")
    gate.add_argument("--no-gate", action="store_true", help="promote the latest version whatever its metric")
    sub.add_parser("runs", help="every job run's record, oldest first, as JSON")
    rollback = sub.add_parser("rollback", help="point an alias back at its previous version")
    rollback.add_argument("name")
    rollback.add_argument("--alias", default=PRODUCTION, help="default: production")
    add_import_command(sub)
    add_report_command(sub)
    return p


def model_summaries(store: ModelStore) -> list[dict[str, Any]]:
    return [
        {"name": name, "versions": store.versions(name), "aliases": store.aliases(name)}
        for name in store.names()
        if store.versions(name)
    ]


def version_details(store: ModelStore, ref: ModelRef) -> dict[str, Any]:
    version = store.resolve(ref)
    verified = store.open_version(ref.name, version)
    meta = json.loads(verified.text(METADATA_FILE))
    return {
        "name": ref.name,
        "version": version,
        "aliases": sorted(a for a, v in store.aliases(ref.name).items() if v == version),
        "created": meta.get("created"),
        "estimator": meta.get("estimator", {}).get("name"),
        "task": meta.get("task"),
        "metrics": meta.get("metrics", {}),
        "evaluation": meta.get("evaluation"),
        "source": meta.get("source"),
        "run_id": meta.get("run_id"),
        "files": sorted({f.split("/")[0] for f in store.version_files(ref.name, version)}),
        "signature_checked": verified.signed,  # only where a signing key is set
        "compiled_predictor": NATIVE_FILE in verified.digests,
        "feature_importance": global_importance(verified),
    }


def metric_of(meta: dict[str, Any], metric: str | None) -> tuple[str, float | None]:
    metrics = meta.get("metrics", {})
    metric = metric or main_metric(meta.get("task"), metrics) or ("rmse" if meta.get("task") == "regression" else "accuracy")
    return metric, metrics.get(metric)


def promote_if_better(store: ModelStore, name: str, alias: str, metric: str | None, gate: bool) -> str:
    """Promote `name`'s latest version to `alias` unless the version there now is better."""
    latest = store.resolve(ModelRef(name, alias=LATEST))
    current = store.aliases(name).get(alias)
    if current == latest:
        return f"{name}@{alias} is already version {latest}"
    new_meta = json.loads(store.open_version(name, latest).text(METADATA_FILE))
    if gate and current is not None:
        old_meta = json.loads(store.open_version(name, current).text(METADATA_FILE))
        metric, new = metric_of(new_meta, metric)
        _, old = metric_of(old_meta, metric)
        if new is None or old is None:
            raise UsageError(f"metric '{metric}' is missing from version {latest if new is None else current}")
        worse = is_better(metric, old - new)
        if worse:
            return f"kept {name}@{alias} at version {current}: version {latest} has {metric} {new:.4f}, worse than {old:.4f}"
    store.promote(name, latest, alias)
    return f"{name}@{alias} -> {latest}" + (f" (was {current})" if current else "")


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def execute(args: argparse.Namespace, record: RunRecord) -> None:
    store = job_store(args)
    if args.command == "list":
        models = model_summaries(store)
        if args.json:
            print(json.dumps(models, indent=2))
        elif not models:
            print(f"no models in {store.location} yet")
        else:
            print_table([["MODEL", "VERSIONS", "ALIASES"]] + [
                [m["name"], ",".join(m["versions"]), " ".join(f"{a}={v}" for a, v in m["aliases"].items())] for m in models
            ])
    elif args.command == "show":
        details = version_details(store, ModelRef.parse(args.ref))
        record.model = {"name": details["name"], "version": details["version"]}
        if args.json:
            print(json.dumps(details, indent=2))
            return
        for key in ("name", "version", "aliases", "created", "estimator", "task", "evaluation", "source", "run_id",
                    "signature_checked", "compiled_predictor"):
            value = details[key]
            print(f"{key:<10}  {', '.join(value) if isinstance(value, list) else value}")
        for metric, value in details["metrics"].items():
            print(f"  {metric:<10}{value:.4f}")
        print_importance(details["feature_importance"])
    elif args.command == "import":
        run_import(args, store, record)
    elif args.command == "report":
        print(run_report(args, store))
    elif args.command == "runs":
        records = RunLog(args.runs_dir).records()
        print(json.dumps(sorted(records, key=lambda r: (r.get("started") or "", r.get("finished") or ""))))
    else:
        report(record, args.name, args.alias, store, move_alias(store, args))


MOVES = ("promote", "promote-if-better", "rollback", "import")


def move_alias(store: ModelStore, args: argparse.Namespace) -> str:
    """Promote, gate or roll back; returns the sentence that says what happened."""
    if args.command == "promote":
        previous = store.promote(args.name, args.version, args.alias)
        return f"{args.name}@{args.alias} -> {args.version}" + (f" (was {previous})" if previous else "")
    if args.command == "promote-if-better":
        return promote_if_better(store, args.name, args.alias, args.metric, not args.no_gate)
    version = store.rollback(args.name, args.alias)
    return f"{args.name}@{args.alias} -> {version} (rolled back)"


def report(record: RunRecord, name: str, alias: str, store: ModelStore, message: str) -> None:
    """Print what happened, and put it and the version the alias now names in the run record."""
    print(message)
    record.output = message
    version = store.aliases(name).get(alias)
    if version is not None:
        record.model = {"name": name, "version": version}


def main(argv: Sequence[str] | None = None) -> int:
    # Only what changes the store is a run worth keeping; looking (list, show, runs) leaves no record.
    return run_job("models", parser(), STORE_DEFAULT, execute, argv, recorded=lambda args: args.command in MOVES)


if __name__ == "__main__":
    sys.exit(main())
