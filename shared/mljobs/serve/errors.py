"""Errors a client sees: one JSON shape, a stable code, the bad fields named (at most the first
100, with a count of all), no stack trace."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRecordsError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: list[dict[str, Any]] | None = None,
                 field_count: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []
        self.field_count = field_count if field_count is not None else len(self.fields)

    def body(self) -> dict[str, Any]:
        """{"error": {"code", "message", "fields"?: [{"field", "reason", "row"?}], "field_count"?}}"""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
            error["field_count"] = self.field_count
        return {"error": error}

    @classmethod
    def invalid_records(cls, exc: InvalidRecordsError) -> ApiError:
        return cls(422, "invalid_input", str(exc), [e.as_dict() for e in exc.errors], exc.total)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", message)
