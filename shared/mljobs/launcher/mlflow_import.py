"""`mljobs models import PATH --model NAME [--example FILE]`: the host's MLflow model folder (and
example file) mounted read-only into the models job; a runs:/ or models:/ URI is passed as it is
(the job then reaches MLFLOW_TRACKING_URI, which the contract hands on)."""

from __future__ import annotations

from pathlib import Path

from .engine import LauncherError
from .jobs import Bind, JobSpec, Mounts

MODEL_MOUNT, EXAMPLE_MOUNT = "/data/mlflow-model", "/data/example"


def import_spec(words: list[str]) -> JobSpec:
    """The models job for `import ...` (words after `models`), host paths turned into mounts."""
    args: list[str] = []
    mounts: Mounts = {}
    source_seen = False
    rest = iter(words[1:])
    for word in rest:
        flag, _, inline = word.partition("=")
        if flag == "--example":
            value = inline or next(rest, "")
            path = Path(value)
            if not path.is_file():
                raise LauncherError(f"--example {value}: no such file", 2)
            mounts[EXAMPLE_MOUNT] = Bind(str(path.resolve().parent), read_only=True)
            args += ["--example", f"{EXAMPLE_MOUNT}/{path.name}"]
        elif not word.startswith("-") and not source_seen and (not args or args[-1] != "--model"):
            source_seen = True
            if word.startswith(("runs:/", "models:/")):
                args.append(word)
                continue
            folder = Path(word)
            if folder.name == "MLmodel":
                folder = folder.parent
            if not (folder / "MLmodel").is_file():
                raise LauncherError(f"{word}: not an MLflow model folder (no MLmodel file in it)", 4 if folder.is_dir() else 2)
            mounts[MODEL_MOUNT] = Bind(str(folder.resolve()), read_only=True)
            args.append(MODEL_MOUNT)
        else:
            args.append(word)
    return JobSpec("models", ["--models-dir", "/models", "import", *args], mounts)
