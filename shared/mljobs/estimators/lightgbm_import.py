"""LightGBM for scoring alone. `import lightgbm` also imports scikit-learn and pandas when they
are installed (for its scikit-learn and DataFrame integrations; scikit-learn pulls in
scipy.stats), and pyarrow imports pandas on its first conversion to numpy: over a second of
start-up that a job scoring numpy matrices with a LightGBM model never uses. A job that loads one
model and needs neither library calls scoring_only() first; loading a LightGBM model then leaves
them out for the rest of the process, so LightGBM and pyarrow find neither, as on a machine
without them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

# What LightGBM and pyarrow import only for their integrations, which numpy scoring never touches.
INTEGRATIONS = ("sklearn", "pandas")
_scoring_only = False


def scoring_only() -> None:
    """This process loads one model and scores numpy matrices (a predict job). Call before the
    model is loaded; a scikit-learn model loads as usual, a LightGBM one without the integrations."""
    global _scoring_only
    _scoring_only = True


def leave_out_integrations() -> None:
    """Before a LightGBM model loads: in a scoring-only process where nothing imported them
    yet, make `import sklearn` and `import pandas` fail (ImportError) from now on."""
    if not _scoring_only or any(name in sys.modules for name in ("lightgbm", *INTEGRATIONS)):
        return
    sys.meta_path.insert(0, _LeftOut())


class _LeftOut(MetaPathFinder):
    """Finds the integrations' modules missing, whoever imports them (pyarrow's Cython code
    included, which would take a None placed in sys.modules for the module itself)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] in INTEGRATIONS:
            raise ModuleNotFoundError(f"{fullname} is left out of this scoring-only process", name=fullname)
        return None
