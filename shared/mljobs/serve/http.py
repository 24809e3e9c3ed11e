"""The request and reply every protocol adapter sees: plain data, no Flask, so adapters are
framework-free and a test can drive them without a server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..predictor import Predictor


@dataclass(frozen=True)
class HttpRequest:
    content_type: str  # the media type only, lower case ("" when none was sent)
    headers: Mapping[str, str]  # looked up by lower-case name: Werkzeug's headers ignore case (no copy per request)
    params: Mapping[str, str]  # path parameters, e.g. the model name of a v2 route
    read_body: Callable[[], bytes]  # enforces the size limit, whether the body is chunked or not
    best_accept: Callable[[list[str]], str | None]  # the client's preferred type among those offered
    # The URL's query arguments (?explain=true), parsed only by a route that reads them.
    read_query: Callable[[], Mapping[str, str]] = dict

    def body(self) -> bytes:
        return self.read_body()

    @property
    def query(self) -> Mapping[str, str]:
        return self.read_query()


@dataclass
class Reply:
    """What a route answers: JSON (any `payload`) or text/bytes with its media type."""

    payload: Any
    status: int = 200
    media_type: str = "application/json"
    predictor: Predictor | None = None  # the version that answered, named in X-Model-* headers
    headers: dict[str, str] = field(default_factory=dict)
