"""Whether a SQL job may run scoring-only (see estimators/lightgbm_import.py), as the predict job
does: a query whose every model is a LightGBM model and that evaluates nothing needs neither
scikit-learn nor pandas. Leaving them out is what lets ml_predict keep up with the batch job
(bench/sql_predict.py: 1M rows in about 6 s instead of 10.7 s on two cores)."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import MljobsError
from ..estimators.lightgbm_import import scoring_only
from ..store import ModelRef, ModelStore
from . import chosen_ref, function_name, model_choices, models_called
from .table_call import TableCall, find_calls

# ml_evaluate computes its metrics with scikit-learn, as training did.
NEEDS_SKLEARN = re.compile(r"\bml_evaluate\b", re.IGNORECASE)


def every_call(query: str) -> list[TableCall]:
    """The table function calls of a query, those inside other calls' arguments included."""
    calls = find_calls(query)
    return calls + [inner for call in calls if call.query for inner in every_call(call.query)]


def lightgbm_only(store: ModelStore, query: str, chosen: dict[str, ModelRef]) -> bool:
    """True when every model the query names is a LightGBM model (read from its metadata, which
    the load verifies afterwards: this only picks a mode, it trusts nothing)."""
    if NEEDS_SKLEARN.search(query):
        return False
    by_function = {function_name(n)[len("predict_"):].lower(): n for n in store.names()}
    refs = [chosen.get(by_function.get(n.lower(), n), ModelRef(by_function.get(n.lower(), n))) for n in models_called(query)]
    refs += [chosen_ref(call.model, chosen) for call in every_call(query)]
    if not refs:
        return False
    for ref in refs:
        try:
            version = store.resolve(ref)
            meta: dict[str, Any] = json.loads(store.storage.read_version_file(ref.name, version, "metadata.json", None))
        except (MljobsError, OSError, ValueError):  # unknown model, unreadable file: the load says what is wrong
            return False
        if meta.get("estimator", {}).get("kind") != "lightgbm":
            return False
    return True


_OWN_PROCESS = False


def own_process() -> None:
    """The SQL job runs as a process of its own (python -m), not inside another program or a
    test session, whose later imports a scoring-only mode would break."""
    global _OWN_PROCESS
    _OWN_PROCESS = True


def choose_mode(store: ModelStore, query: str, models: list[str]) -> None:
    """Call before any model is loaded (`models`: the job's --model NAME@ALIAS overrides):
    scoring-only when the job is its own process and the query allows it."""
    if not _OWN_PROCESS:
        return
    try:
        allowed = lightgbm_only(store, query, model_choices(models))
    except MljobsError:  # a malformed call or reference: the query's own run reports it
        return
    if allowed:
        scoring_only()
