"""A data file: a local path or an object in S3, and the ways the readers open one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from .objectstore import S3Path, filesystem

# A data file: a local path, or an object in S3 (s3://bucket/key).
DataFile = Union[Path, S3Path]


def open_bytes(path: DataFile, seekable: bool = False) -> Any:
    """The file's bytes to read ourselves: a local file, or an object's stream (`seekable`: a
    random-access reader, for an object)."""
    if isinstance(path, S3Path):
        return filesystem().open_input_file(path.path) if seekable else filesystem().open_input_stream(path.path)
    return open(path, "rb")


def open_stream(path: DataFile) -> Any:
    """What pyarrow reads a CSV from as it streams in: the path, or an object's input stream."""
    if isinstance(path, S3Path):
        return filesystem().open_input_stream(path.path)
    return str(path)


def open_file(path: DataFile) -> Any:
    """A random-access reader (Parquet reads its footer first)."""
    if isinstance(path, S3Path):
        return filesystem().open_input_file(path.path)
    return str(path)
