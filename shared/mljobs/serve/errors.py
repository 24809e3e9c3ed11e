"""Errors a client sees: one JSON shape, a stable code, every bad field named, no stack trace."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRecordsError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: list[dict] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []

    def body(self) -> dict[str, Any]:
        """{"error": {"code", "message", "fields"?: [{"field", "reason", "row"?}]}}"""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}

    @classmethod
    def invalid_records(cls, exc: InvalidRecordsError) -> ApiError:
        return cls(422, "invalid_input", str(exc), [e.as_dict() for e in exc.errors])


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", message)
