"""How a request asks for explanations: native `?explain=true&top_k=K`, v2 `parameters`
{"explain": true, "top_k": K}. Either way the reply adds BigQuery ML's explanation fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import bad_request

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


@dataclass(frozen=True)
class Explain:
    top_k: int | None  # None: every feature


def explain_asked(flag: Any, top_k: Any, where: str) -> Explain | None:
    """None unless explanations were asked for; a 400 naming the argument when it is malformed."""
    if isinstance(flag, str):
        if flag.lower() not in TRUE + FALSE:
            raise bad_request(f"{where}: explain must be true or false, not '{flag}'")
        flag = flag.lower() in TRUE
    if flag is None or flag is False:
        if top_k is not None:
            raise bad_request(f"{where}: top_k needs explain=true")
        return None
    if flag is not True:
        raise bad_request(f"{where}: explain must be true or false")
    if top_k is None:
        return Explain(None)
    try:
        k = int(top_k) if not isinstance(top_k, bool) else -1
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        k = -1
    if k < 1 or (isinstance(top_k, float) and top_k != k):
        raise bad_request(f"{where}: top_k must be a whole number of 1 or more, not {top_k!r}")
    return Explain(k)
