"""One exception tree; each class carries the exit code of the container contract."""

from __future__ import annotations

from dataclasses import dataclass


class MljobsError(Exception):
    """Base of every error a job reports to its user; the message is the one-line reason."""

    exit_code = 1


class UsageError(MljobsError):
    """Bad flags, config or environment."""

    exit_code = 2


class BadInputError(MljobsError):
    """The data given to a job cannot be used as it is."""

    exit_code = 3


class ModelError(MljobsError):
    """A model is missing, refused (failed verification) or corrupt."""

    exit_code = 4


@dataclass(frozen=True)
class FieldError:
    """What is wrong with one field of one record (row is None for single records)."""

    field: str
    reason: str
    row: int | None = None

    def as_dict(self) -> dict:
        out = {"field": self.field, "reason": self.reason}
        if self.row is not None:
            out["row"] = self.row
        return out


class InvalidRecordsError(BadInputError):
    """Records that do not fit the model's feature schema; names every bad field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        first = errors[0]
        where = f"row {first.row}, " if first.row is not None else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}column '{first.field}': {first.reason}{more}")
