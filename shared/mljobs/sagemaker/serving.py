"""`<serve image> serve`: SageMaker's inference contract, as the variables the server reads.

The model comes from /opt/ml/model (model.tar.gz extracted: a one-model store, as training wrote
it), the port from SAGEMAKER_BIND_TO_PORT, the body limit from SAGEMAKER_MAX_PAYLOAD_IN_MB."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

from ..errors import ModelError
from .privileges import copy_for_job, is_root

MODEL_DIR = Path("/opt/ml/model")
DEFAULT_PORT = "8080"
MB = 1024 * 1024


def model_name(model_dir: Path) -> str:
    """The one model of the store SageMaker extracted (a folder with aliases/)."""
    names = sorted(p.name for p in model_dir.iterdir() if (p / "aliases").is_dir() and not p.name.startswith(".")) \
        if model_dir.is_dir() else []
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise ModelError(f"{model_dir} must hold exactly one model trained by the mljobs train image (found: {found})")
    return names[0]


def private_store(model_dir: Path, name: str) -> Path:
    """Root reads SageMaker's root-owned folder; the server gets a copy its user owns."""
    if not is_root():
        return model_dir
    store = Path(tempfile.mkdtemp(prefix="mljobs-model-"))
    store.chmod(0o711)
    copy_for_job(model_dir / name, store / name)
    return store


def server_environment(environ: Mapping[str, str], store: Path, name: str) -> dict[str, str]:
    env = {**environ, "MLJOBS_MODELS_DIR": str(store), "MLJOBS_STORE": "", "MLJOBS_MODEL": name,
           "MLJOBS_PORT": environ.get("SAGEMAKER_BIND_TO_PORT") or DEFAULT_PORT}
    payload = environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "")
    if payload.strip().isdigit() and int(payload) > 0:
        env["MLJOBS_MAX_BODY_BYTES"] = str(int(payload) * MB)
    return env


def sagemaker_environment(environ: Mapping[str, str] | None = None, model_dir: Path = MODEL_DIR) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    name = model_name(model_dir)
    return server_environment(environ, private_store(model_dir, name), name)
