"""One exception tree; each class carries the exit code of the container contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.row is not None:
            out["row"] = self.row
        return out


MAX_FIELD_ERRORS = 100  # a reply or message names at most this many; the rest are counted


class InvalidRecordsError(BadInputError):
    """Records that do not fit the model's feature schema; names the first bad fields (at most
    MAX_FIELD_ERRORS of them) and counts them all, so a huge bad request cannot build a huge error."""

    def __init__(self, errors: list[FieldError], total: int | None = None):
        self.errors = errors[:MAX_FIELD_ERRORS]
        self.total = max(total or 0, len(errors))
        first = errors[0]
        where = f"row {first.row}, " if first.row is not None else ""
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        super().__init__(f"{where}column '{first.field}': {first.reason}{more}")


class FieldErrors:
    """Collects field errors, keeping the first MAX_FIELD_ERRORS and counting every one."""

    def __init__(self) -> None:
        self.kept: list[FieldError] = []
        self.total = 0

    def add(self, error: FieldError) -> None:
        self.total += 1
        if len(self.kept) < MAX_FIELD_ERRORS:
            self.kept.append(error)

    def raise_if_any(self) -> None:
        if self.total:
            raise InvalidRecordsError(self.kept, self.total)


def arrow_message(exc: Exception) -> str:
    """The first line of a pyarrow error, which says what is wrong (the rest is its context)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
