"""LightGBM models compiled to machine code by lleaves: the same predictions (to about 1e-15),
several times faster. Training builds one when the deployment signs its models; loaders use it
only from a signed version, because a compiled file is code that runs in every container that
loads it. Anywhere else (no key, another CPU family, lleaves missing) the text model serves.
"""

from __future__ import annotations

import json
import logging
import platform
import tempfile
import threading
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..cpus import usable_cpus
from ..errors import ModelError
from ..manifest import VerifiedVersion
from .lightgbm_model import LIGHTGBM_FILE, class_columns

NATIVE_FILE, NATIVE_INFO = "model.native.o", "model.native.json"
# A baseline CPU rather than the training host's, so a model trained on a new machine runs on an
# older one; lleaves loses little by it (tree walking is compares and branches).
BASELINE_CPU = {"x86_64": "x86-64-v2", "aarch64": "generic"}
# Below this many rows a thread pool costs more than it saves.
PARALLEL_FROM_ROWS = 5_000

log = logging.getLogger("mljobs.native")


def compile_native(folder: Path) -> list[str]:
    """Compile the folder's LightGBM text model; returns the files written."""
    import lleaves
    import llvmlite.binding as llvm

    cpu = BASELINE_CPU.get(platform.machine(), "generic")
    model = lleaves.Model(model_file=str(folder / LIGHTGBM_FILE))
    model.compile(cache=str(folder / NATIVE_FILE), target_cpu=cpu, target_cpu_features="")
    info = {
        "target": llvm.get_process_triple(),
        "cpu": cpu,
        "lleaves": importlib_metadata.version("lleaves"),
        "llvmlite": importlib_metadata.version("llvmlite"),
    }
    (folder / NATIVE_INFO).write_text(json.dumps(info, indent=2))
    return [NATIVE_FILE, NATIVE_INFO]


class NativeLightGBMEstimator:
    kind = "lightgbm"
    libraries: tuple[str, ...] = ("lightgbm",)

    def __init__(self, model: Any, n_classes: int, model_text: str = ""):
        self.model = model
        self.n_classes = n_classes
        self.model_text = model_text  # the verified text model, for explanations
        self._booster: Any = None
        self._booster_lock = threading.Lock()

    def text_booster(self) -> Any:
        """LightGBM's booster of the same trees, built on first use: compiled code has no
        contributions, and most users of this predictor never ask for them."""
        with self._booster_lock:
            if self._booster is None:
                import lightgbm

                self._booster = lightgbm.Booster(model_str=self.model_text)
            return self._booster

    def predict_raw(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        jobs = 1 if len(matrix) < PARALLEL_FROM_ROWS else (threads or usable_cpus())
        return class_columns(self.model.predict(np.ascontiguousarray(matrix, dtype=np.float64), n_jobs=jobs), self.n_classes)

    def save(self, folder: Path) -> list[str]:
        raise ModelError("a compiled model is loaded from its version, never saved again")

    def importances(self) -> None:
        return None


def load_native(verified: VerifiedVersion, n_classes: int) -> NativeLightGBMEstimator | None:
    """The compiled model of a verified, signed version, or None to fall back to the text model."""
    if NATIVE_FILE not in verified.digests or NATIVE_INFO not in verified.digests:
        return None
    try:
        import lleaves
        import llvmlite.binding as llvm
    except ImportError:
        log.warning("model %s has a compiled predictor but lleaves is not installed: using LightGBM", verified.label)
        return None
    info = json.loads(verified.text(NATIVE_INFO))
    if info.get("target") != llvm.get_process_triple():
        log.info("model %s was compiled for %s, this host is %s: using LightGBM", verified.label, info.get("target"), llvm.get_process_triple())
        return None
    # lleaves loads whatever files it is given, so it gets a private copy of the bytes that were
    # checked against the signed MANIFEST, never the store's files (they could change after the check).
    with tempfile.TemporaryDirectory(prefix="mljobs-native-") as scratch:
        code, text = Path(scratch) / NATIVE_FILE, Path(scratch) / LIGHTGBM_FILE
        code.write_bytes(verified.files[NATIVE_FILE])
        text.write_bytes(verified.files[LIGHTGBM_FILE])
        model = lleaves.Model(model_file=str(text))
        try:
            model.compile(cache=str(code), target_cpu=info["cpu"], target_cpu_features="")
        except (RuntimeError, KeyError) as exc:  # LLVM refuses the object file, or no cpu recorded
            raise ModelError(f"model {verified.label} is refused: its compiled predictor does not load ({exc})") from exc
    return NativeLightGBMEstimator(model, n_classes, verified.text(LIGHTGBM_FILE))
