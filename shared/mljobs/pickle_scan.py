"""Pickled models brought in from elsewhere (MLflow's model.pkl), read without running them first.

`pickle_globals` lists every importable name a pickle refers to, by walking its opcodes
(pickletools) without executing any: a pickle can only run code through such a name. A pickle is
loaded only when every name is allowed: what skops trusts by default (scikit-learn's estimators,
numpy's dtypes and ufuncs, builtin containers), any scikit-learn class, numpy's own array
rebuilders, and the extra names a caller adds (LightGBM's classes for its flavor). The loader then
enforces the same list (a restricted Unpickler), so a name the scan missed cannot slip through.
"""

from __future__ import annotations

import functools
import importlib
import io
import pickle  # nosec B403 - loads only allow-listed names (RestrictedUnpickler) unless the user trusts the file
import pickletools  # nosec B403 - reads opcodes, executes nothing
from typing import Any, Iterable

from .errors import ModelError
from .estimators.sklearn_model import defined_in_sklearn

# How numpy and the standard library rebuild arrays, scalars and containers in a pickle.
REBUILDERS = frozenset({
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
    "numpy.ndarray", "numpy.dtype", "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__generator_ctor",
    "numpy.random.mtrand.RandomState", "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
    "builtins.slice", "builtins.frozenset", "builtins.complex", "builtins.bytearray", "builtins.dict",
    "collections.OrderedDict", "collections.defaultdict", "copyreg._reconstructor", "builtins.object",
})
LIGHTGBM_NAMES = frozenset({
    "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier", "lightgbm.sklearn.LGBMRegressor",
    "lightgbm.sklearn.LGBMModel", "lightgbm.sklearn._LGBMLabelEncoder", "collections.OrderedDict",
})
# Opcodes that push a text value (the module and name STACK_GLOBAL pops are pushed by these).
TEXT_PUSHES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
                         "BINSTRING", "STRING"})


@functools.cache
def skops_default_names() -> frozenset[str]:
    """The type names skops trusts without being told (its own lists, read from skops itself)."""
    from skops.io import _trusted_types as trusted

    lists = ("PRIMITIVE_TYPE_NAMES", "CONTAINER_TYPE_NAMES", "NUMPY_DTYPE_TYPE_NAMES", "NUMPY_UFUNC_TYPE_NAMES",
             "SCIPY_UFUNC_TYPE_NAMES", "SKLEARN_ESTIMATOR_TYPE_NAMES", "SKLEARN_INTERNAL_TYPE_NAMES",
             "NUMPY_RANDOM_BIT_GENERATOR_TYPE_NAMES")
    return frozenset(name for attribute in lists for name in getattr(trusted, attribute, ()))


def pickle_globals(data: bytes) -> list[str]:
    """Every `module.name` the pickle would import, in order of first use ('?' for one the walk
    cannot name, which no allow-list contains). Nothing in the pickle is executed."""
    found: list[str] = []
    recent: list[Any] = []  # what the last opcodes pushed: text, or None for anything else
    memo: dict[int, Any] = {}
    try:
        for opcode, arg, _position in pickletools.genops(data):
            name = opcode.name
            if name == "GLOBAL" or name == "INST":
                found.append(str(arg).replace(" ", ".", 1))
                recent.append(None)
            elif name == "STACK_GLOBAL":
                module, attribute = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
                found.append(f"{module}.{attribute}" if isinstance(module, str) and isinstance(attribute, str) else "?")
                recent.append(None)
            elif name in TEXT_PUSHES:
                recent.append(arg if isinstance(arg, str) else arg.decode("latin-1") if isinstance(arg, bytes) else None)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                memo[arg] = recent[-1] if recent else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(arg) if isinstance(arg, int) else None)
            elif name not in ("FRAME", "PROTO", "STOP"):
                recent.append(None)
            del recent[:-2]
    except (ValueError, IndexError, EOFError) as exc:
        raise ModelError(f"the pickle is damaged: {exc}") from exc
    return list(dict.fromkeys(found))


def is_allowed(name: str, extra: Iterable[str] = ()) -> bool:
    """A name skops trusts by default, a scikit-learn class, a numpy rebuilder, or one of `extra`."""
    if name in REBUILDERS or name in extra or name in skops_default_names():
        return True
    # Only an estimator class scikit-learn itself defines: its modules re-export names from
    # elsewhere (operator.attrgetter, functools.partial, ...), and unpickling calls what it names.
    if defined_in_sklearn(name):
        from sklearn.base import BaseEstimator

        module, _, attribute = name.rpartition(".")
        return issubclass(getattr(importlib.import_module(module), attribute), BaseEstimator)
    return False


def refused_names(data: bytes, extra: Iterable[str] = ()) -> list[str]:
    extra = frozenset(extra)
    return [name for name in pickle_globals(data) if not is_allowed(name, extra)]


class RestrictedUnpickler(pickle.Unpickler):  # nosec B301 - find_class refuses every name off the list
    def __init__(self, data: bytes, extra: frozenset[str]):
        super().__init__(io.BytesIO(data))
        self.extra = extra

    def find_class(self, module: str, name: str) -> Any:
        if not is_allowed(f"{module}.{name}", self.extra):
            raise ModelError(f"the pickle names {module}.{name}, which is not on the allow-list")
        return super().find_class(module, name)


def load_pickle(data: bytes, extra: Iterable[str] = (), trust: bool = False) -> Any:
    """The object in a pickle: only allow-listed names, unless the user trusts the file (`trust`)."""
    extra = frozenset(extra)
    if not trust:
        refused = refused_names(data, extra)
        if refused:
            raise ModelError(
                f"the pickle names {refused[0]}, which is outside the allow-list (scikit-learn, numpy, scipy types); "
                "import it with --trust-pickle only if you trust where it came from"
            )
    try:
        if trust:
            return pickle.loads(data)  # nosec B301 - the user said --trust-pickle, and the version records it
        return RestrictedUnpickler(data, extra).load()
    except ModelError:
        raise
    except Exception as exc:  # an unpickling failure takes many forms
        raise ModelError(f"the pickle does not load: {type(exc).__name__}: {exc}") from exc
