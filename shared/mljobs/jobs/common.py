"""What every job shares: settings, logging, the run record, and the exit-code contract."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import traceback
from typing import Any, Callable, Mapping, Sequence

from .. import config
from ..errors import MljobsError, UsageError
from ..runs import RunLog, RunRecord

log = logging.getLogger("mljobs")

COMMON_DEFAULTS: dict[str, Any] = {"models_dir": "/models", "runs_dir": "/runs", "log_level": "INFO"}


def as_list(value: Any) -> list[str]:
    """A list setting from a flag or variable ("a,b") or a YAML list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of settings (flags win over it, it wins over MLJOBS_* variables)")
    parser.add_argument("--models-dir", help="the model store (default /models)")
    parser.add_argument("--runs-dir", help="where run records go (default /runs)")
    parser.add_argument("--log-level", help="DEBUG, INFO or WARNING")


class Terminated(MljobsError):
    """SIGTERM: stop now, leave nothing half-written (cleanup runs in finally blocks)."""


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise Terminated(f"stopped by signal {signal.Signals(signum).name}")


def run_job(
    job: str,
    parser: argparse.ArgumentParser,
    defaults: Mapping[str, Any],
    execute: Callable[[argparse.Namespace, RunRecord], None],
    argv: Sequence[str] | None = None,
    recorded: Callable[[argparse.Namespace], bool] = lambda args: True,
) -> int:
    """Parse settings, run `execute`, record the run (unless `recorded` says this one only
    reads); return the contract's exit code."""
    args = parser.parse_args(argv)
    record = RunRecord(job)
    runs: RunLog | None = None
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        config.resolve(args, {**COMMON_DEFAULTS, **defaults})
        logging.basicConfig(level=str(args.log_level).upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
        runs = RunLog(args.runs_dir) if recorded(args) else None
        try:
            if runs is not None:
                runs.write(record)
        except OSError as exc:
            runs = None
            raise UsageError(f"cannot write run records to {args.runs_dir}: {exc.strerror}") from None
        execute(args, record)
    except (MljobsError, KeyboardInterrupt) as exc:
        code = exc.exit_code if isinstance(exc, MljobsError) else 130
        reason = str(exc) or "interrupted"
    except OSError as exc:  # a full disk, a lost mount: the file and the system's words, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        code, reason = 1, f"input/output error: {exc.strerror or str(exc).strip()}{where}"
    except Exception as exc:  # the contract: a last line that says why, never a silent crash
        traceback.print_exc(file=sys.stderr)
        code, reason = 1, f"unexpected {type(exc).__name__}: {exc}"
    else:
        _finish(runs, record, 0)
        return 0
    _finish(runs, record, code, reason)
    print(f"{job} failed: {reason}", file=sys.stderr)
    return code


def _finish(runs: RunLog | None, record: RunRecord, code: int, reason: str | None = None) -> None:
    record.finish(code, reason)
    if runs is None:
        return
    try:
        runs.write(record)
    except OSError as exc:
        log.warning("could not write the run record to %s: %s", runs.folder, exc)
