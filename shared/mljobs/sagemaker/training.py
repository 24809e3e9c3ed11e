"""`<train image> train`: SageMaker's training contract around the train job.

Root (SageMaker's default user) only reads the settings, gives the job a copy of a channel it
could not read, and writes the results into /opt/ml; the job runs as uid 10001 in a child
process, on a private store, and is stopped by SIGTERM like any of our jobs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess  # nosec B404: the job, our own module, as a child process without a shell
import sys
import tempfile
from pathlib import Path
from types import FrameType

from ..errors import MljobsError, UsageError
from . import hyperparameters
from .privileges import JOB_GID, JOB_UID, copy_for_job, drop_privileges, give, is_root, readable_by_others

OPT_ML = Path("/opt/ml")
CHANNELS = ("train", "validation")
FAILED = "train failed: "


def write_failure(root: Path, reason: str) -> None:
    """SageMaker shows this file's text as the job's FailureReason."""
    output = root / "output"
    output.mkdir(parents=True, exist_ok=True)
    (output / "failure").write_text(reason + "\n")
    if is_root():  # the folder's owner owns it (in local mode: whoever ran the SDK)
        owner = output.stat()
        os.chown(output / "failure", owner.st_uid, owner.st_gid)


def job_input(channel: Path, work: Path) -> Path:
    """The channel itself if the job's user can read it, else a copy that user owns."""
    if not is_root() or readable_by_others(channel):
        return channel
    return copy_for_job(channel, work / "input" / channel.name)


def job_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    if is_root():
        give(path, JOB_UID, JOB_GID)
    return path


def publish_model(store: Path, model_dir: Path) -> None:
    """The private store becomes /opt/ml/model (its owner's files: the host user's in local mode)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    owner = model_dir.stat()
    for entry in store.iterdir():
        target = model_dir / entry.name
        shutil.copytree(entry, target, symlinks=True, dirs_exist_ok=True)  # root copies links as links, never what they point to
        if is_root():
            give(target, owner.st_uid, owner.st_gid)


def run_job(command: list[str]) -> tuple[int, str | None]:
    """The job as a child process; its stderr passes through, and its last "train failed:"
    line is the reason. SIGTERM (SageMaker's stop) goes on to the job, which stops cleanly."""
    try:
        child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace",  # nosec B603: no shell, our flags
                                 env={**os.environ, "MLJOBS_STARTED_BY": os.environ.get("MLJOBS_STARTED_BY", "sagemaker")},
                                 preexec_fn=drop_privileges if is_root() else None)
    except subprocess.SubprocessError:  # the drop to uid 10001 failed in the child, before the job ran
        raise UsageError(f"the job could not be started as uid {JOB_UID}: the container lacks the capabilities "
                         "to change user (SETUID, SETGID)") from None

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    reason = None
    try:
        for line in child.stderr or ():
            sys.stderr.write(line)
            if line.startswith(FAILED):
                reason = line.strip()
        code = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code < 0:
        code, reason = 1, reason or f"{FAILED}stopped by signal {signal.Signals(-code).name}"
    return code, reason


def train(root: Path = OPT_ML) -> int:
    work = Path(tempfile.mkdtemp(prefix="mljobs-sagemaker-"))
    work.chmod(0o711)  # the job reaches its folders inside, and lists nothing else
    try:
        flags = hyperparameters.train_arguments(hyperparameters.read(root / "input" / "config" / "hyperparameters.json"))
        channels = {name: root / "input" / "data" / name for name in CHANNELS if (root / "input" / "data" / name).is_dir()}
        if "train" not in channels:
            raise UsageError("there is no 'train' channel: fit the estimator with {'train': <your data>}")
        inputs = {name: job_input(folder, work) for name, folder in channels.items()}
        store, runs = job_folder(work / "store"), job_folder(work / "runs")
        command = [sys.executable, "-m", "mljobs.sagemaker.job"]
        if "validation" in inputs:
            command += ["--validation", str(inputs["validation"])]
        command += ["--", *flags, "--input", str(inputs["train"]), "--models-dir", str(store), "--runs-dir", str(runs)]
        code, reason = run_job(command)
        if code == 0:
            publish_model(store, root / "model")
            return 0
        write_failure(root, reason or f"{FAILED}the job exited with code {code}; see its log")
        return code
    except MljobsError as exc:
        print(f"{FAILED}{exc}", file=sys.stderr)
        write_failure(root, f"{FAILED}{exc}")
        return exc.exit_code
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        reason = f"{FAILED}input/output error: {exc.strerror or exc}{where}"
        print(reason, file=sys.stderr)
        write_failure(root, reason)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
