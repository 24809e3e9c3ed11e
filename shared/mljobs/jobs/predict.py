"""The batch prediction job: stream rows through the model into a committed output folder
(python -m mljobs.jobs.predict)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Sequence

from .. import demo
from ..batch import BatchOptions, Source, run_key, score_source
from ..errors import BadInputError, UsageError
from ..estimators.lightgbm_import import scoring_only
from ..explain_columns import require_explanations
from ..outputs import FORMATS, committed_folder, output_root as output_location, earlier_run, ensure_output_root, run_folder
from ..predictor import load_predictor
from ..runs import RunRecord
from ..store import ModelRef
from ..tableio import NoInputFiles, resolve_inputs
from .store_option import STORE_DEFAULT, add_store_flag, job_store
from .common import add_common_flags, as_list, run_job

log = logging.getLogger("mljobs.predict")

DEFAULTS: dict[str, Any] = {
    "model": demo.MODEL,
    "input": None,
    "output": "/data/output",
    "format": "parquet",
    "keep_columns": [],
    "proba": False,
    "strict": False,
    "force": False,
    "allow_empty": False,
    "chunk_rows": 100_000,
    "threads": 0,
    "explain": False,
    "top_k": None,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="predict", description="Score rows with a stored model.")
    p.add_argument("--model", help="NAME, NAME@ALIAS or NAME:VERSION (default alias: production, else latest)")
    p.add_argument("--input", help="CSV or Parquet: a file, a folder of parts or a glob (default: the demo's new rows)")
    p.add_argument("--output", help="output root folder (default /data/output)")
    p.add_argument("--format", choices=FORMATS)
    p.add_argument("--keep-columns", help="input columns to copy next to the predictions (ids), comma-separated")
    p.add_argument("--proba", action="store_true", default=None, help="add a proba_<class> column per class")
    p.add_argument("--strict", action="store_true", default=None,
                   help="fail on the first bad row, and treat categories the model never saw as bad")
    p.add_argument("--force", action="store_true", default=None, help="score again even if this input was scored by this model version")
    p.add_argument("--allow-empty", action="store_true", default=None,
                   help="an input glob or folder with no files is nothing to do, not an error (for schedulers)")
    p.add_argument("--chunk-rows", type=int, help="rows scored at a time (default 100000); memory follows it")
    p.add_argument("--threads", type=int, help="prediction threads (default: all cores)")
    p.add_argument("--explain", action="store_true", default=None,
                   help="add each row's feature contributions (SHAP): top_feature_attributions, baseline_prediction_value, ...")
    p.add_argument("--top-k", type=int, help="with --explain: keep the K largest contributions per row (default: all)")
    add_common_flags(p)
    add_store_flag(p)
    return p


def top_k_option(value: Any, explain: bool) -> int | None:
    """--top-k (or MLJOBS_TOP_K, text) as a whole number of at least 1, and only with --explain."""
    if value is None:
        return None
    if not explain or not str(value).strip().isdigit() or int(value) < 1:
        raise UsageError(f"--top-k must be a whole number of at least 1, and goes with --explain (got {value})")
    return int(value)


def execute(args: argparse.Namespace, record: RunRecord) -> None:
    options = BatchOptions(
        keep_columns=as_list(args.keep_columns), proba=bool(args.proba), strict=bool(args.strict),
        fmt=args.format, chunk_rows=int(args.chunk_rows), threads=int(args.threads),
        explain=bool(args.explain), top_k=top_k_option(args.top_k, bool(args.explain)),
    )
    if options.chunk_rows < 1:
        raise UsageError("--chunk-rows must be at least 1")
    output_root = output_location(args.output)
    ensure_output_root(output_root)
    try:
        source = Source(tuple(resolve_inputs(args.input)) if args.input else ())
    except NoInputFiles:
        if not args.allow_empty:
            raise
        record.input, record.status_detail = args.input, "nothing to score"
        log.info("no files match %s: nothing to score", args.input)
        return
    record.input = source.name
    predictor = load_predictor(job_store(args), ModelRef.parse(args.model), strict_categories=options.strict)
    record.model = {"name": predictor.name, "version": predictor.version}
    if options.explain:
        require_explanations(predictor)
    input_fingerprint = source.fingerprint()  # cheap; the full hash runs beside the scoring
    content_hash = source.content_hash()
    key = run_key(predictor, input_fingerprint, options)
    previous = None if args.force else earlier_run(output_root, predictor.name, key)
    if previous and "input_blake3" not in previous:
        log.info("run %s of %s records no input_blake3 (an earlier mljobs made it): scoring it again", previous["run_id"], source.name)
        previous = None
    elif previous and previous["input_blake3"] != content_hash():
        log.info("%s has the sizes and ends of the input of run %s, but other contents: scoring it", source.name, previous["run_id"])
        previous = None
    if previous:
        record.status_detail = "already scored"
        record.output = previous["path"]
        record.rows = previous["rows"]
        log.info("%s was already scored by %s:%s in run %s (%s); nothing to do (--force scores it again)",
                 source.name, predictor.name, predictor.version, previous["run_id"], previous["path"])
        return
    final = run_folder(output_root, predictor.name, record.run_id)
    log.info("scoring %s with %s:%s", source.name, predictor.name, predictor.version)
    summary: dict[str, Any] = {
        "run_id": record.run_id, "key": key, "model": record.model, "input": source.name,
        "input_fingerprint": input_fingerprint, "options": options.output_key(),
    }
    with committed_folder(final, summary) as staging:
        counts = score_source(predictor, source, staging, options)
        if counts.rows_in == 0:
            raise BadInputError(f"input {source.name} has no rows")
        record.rows = summary["rows"] = {"in": counts.rows_in, "out": counts.rows_out, "rejected": counts.rejected}
        summary["unseen_categories"] = counts.unseen_categories
        summary["input_blake3"] = content_hash()
    record.output = str(final)
    if counts.unseen_categories:
        log.warning("categories the model never saw, scored as missing: %s",
                    ", ".join(f"{c} ({n} rows)" for c, n in counts.unseen_categories.items()))
    if counts.rejected:
        log.warning("%d of %d rows rejected: see rejects.%s", counts.rejected, counts.rows_in, options.fmt)
    log.info("wrote %d predictions to %s", counts.rows_out, final)


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("predict", parser(), {**DEFAULTS, **STORE_DEFAULT}, execute, argv)


if __name__ == "__main__":
    scoring_only()  # a process of its own, one model, numpy in: no scikit-learn or pandas to import
    sys.exit(main())
