"""What a route is: a path, a method, a handler that adapts one protocol to the scoring service,
the protocol's error shape, and the route's OpenAPI operation. The app and the OpenAPI document
are both built from the one table of routes (routes.py), so neither can miss a route."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ApiError
from .http import HttpRequest, Reply
from .service import ScoringService

Handler = Callable[[ScoringService, HttpRequest], Reply]


def our_error_body(exc: ApiError) -> Any:
    return exc.body()


@dataclass(frozen=True)
class Protocol:
    """How a protocol shapes its errors, and the OpenAPI schema that describes that shape."""

    name: str
    error_body: Callable[[ApiError], Any] = our_error_body
    error_schema: str = "Error"


MLJOBS = Protocol("mljobs")


@dataclass(frozen=True)
class Route:
    path: str  # Flask's syntax: /v2/models/<name>/infer
    method: str
    handler: Handler
    protocol: Protocol
    summary: str
    request: dict[str, Any] | None = None  # OpenAPI media type -> schema of the body
    replies: dict[str, Any] = field(default_factory=dict)  # OpenAPI responses of success
    errors: dict[str, str] = field(default_factory=dict)  # status -> when this route answers it
    query: tuple[tuple[str, str, str], ...] = ()  # query arguments: name, OpenAPI type, what it does

    @property
    def endpoint(self) -> str:
        return f"{self.method.lower()} {self.path}"
