"""S3-compatible object storage through pyarrow.fs (no boto3): `s3://bucket/key` locations, the
filesystem built from the standard AWS_* variables, and S3 failures as one-line errors that name
the location and carry the contract's exit code.

    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN)   credentials
    AWS_REGION (or AWS_DEFAULT_REGION)                            region
    AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3)                     another S3 server (MinIO, SeaweedFS, ...)
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from .errors import MljobsError, ModelError, UsageError

SCHEME = "s3://"


def is_s3(location: object) -> bool:
    return isinstance(location, S3Path) or (isinstance(location, str) and location.startswith(SCHEME))


@dataclass(frozen=True)
class S3Path:
    """An object or prefix: `s3://bucket/key`. Has the few Path-like members the jobs use."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Path:
        bucket, _, key = url[len(SCHEME):].partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise UsageError(f"{url} does not name an S3 bucket: use s3://BUCKET/PREFIX")
        return cls(bucket, key.strip("/"))

    @property
    def path(self) -> str:
        """As pyarrow's S3FileSystem names it: bucket/key."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        name = self.name
        return name[name.rfind("."):] if "." in name.lstrip(".") else ""

    @property
    def parent(self) -> S3Path:
        return S3Path(self.bucket, self.key.rpartition("/")[0])

    def __truediv__(self, part: str) -> S3Path:
        return S3Path(self.bucket, f"{self.key}/{part}".strip("/"))

    def relative_to(self, other: S3Path) -> str:
        return self.key[len(other.key):].lstrip("/") if other.key else self.key

    def __str__(self) -> str:
        return SCHEME + self.path


def endpoint_of(environ: Mapping[str, str]) -> str | None:
    return environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None


def filesystem(environ: Mapping[str, str] | None = None) -> pafs.S3FileSystem:
    """The S3 filesystem the AWS_* variables describe (one per process and setting)."""
    environ = os.environ if environ is None else environ
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
             "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
    return _filesystem(tuple((n, environ.get(n, "")) for n in names))


@lru_cache(maxsize=4)
def _filesystem(settings: tuple[tuple[str, str], ...]) -> pafs.S3FileSystem:
    env = {k: v for k, v in settings if v}
    options: dict[str, object] = {"connect_timeout": 5.0, "request_timeout": 60.0}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        options.update(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
                       session_token=env.get("AWS_SESSION_TOKEN"))
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    endpoint = endpoint_of(env)
    if endpoint:  # pyarrow does not read AWS_ENDPOINT_URL itself
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme or "https")
        options.setdefault("region", "us-east-1")  # S3-compatible servers take any region; skip AWS's lookup
    return pafs.S3FileSystem(**options)


# --- failures as the contract's errors -------------------------------------------------------

DENIED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "InvalidAccessKeyId",
          "SignatureDoesNotMatch", "AccessDenied", "MISSING_AUTHENTICATION_TOKEN", "HTTP status 403")
NO_BUCKET = ("NO_SUCH_BUCKET", "NoSuchBucket")


class StoreUnreachable(ModelError):
    """The model store's server cannot be reached (exit 4: no model can be loaded from it)."""


class StoreAccessDenied(UsageError):
    """The store refuses these credentials, or names a bucket that is not there (exit 2)."""


# Failures of the store itself rather than of a version: try again later, never refuse the version.
STORE_OUTAGES: tuple[type[MljobsError], ...] = (StoreUnreachable, StoreAccessDenied)


def s3_reason(exc: OSError) -> str:
    """pyarrow's S3 error text, cut to the server's own sentence."""
    text = " ".join(str(exc).split())
    text = text.split(" operation: ", 1)[-1]
    text = re.sub(r"\s*\(Request ID: [^)]*\)", "", text)
    text = text.split("; Details:", 1)[0]
    return re.sub(r"^curlCode: \d+,\s*", "", text).strip() or type(exc).__name__


def outage(exc: OSError, what: str, unreachable: type[MljobsError] = StoreUnreachable) -> MljobsError:
    """An S3 failure as one line naming `what` (e.g. "the model store s3://b/p")."""
    text, endpoint = str(exc), endpoint_of(os.environ) or "AWS"
    if any(marker in text for marker in DENIED):
        return StoreAccessDenied(f"{what} refused the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY): {s3_reason(exc)}")
    if any(marker in text for marker in NO_BUCKET):
        return StoreAccessDenied(f"{what}: no such bucket at {endpoint} ({s3_reason(exc)})")
    return unreachable(f"{what} is unreachable at {endpoint}: {s3_reason(exc)}")


@contextmanager
def translated(what: str, unreachable: type[MljobsError] = StoreUnreachable) -> Iterator[None]:
    """Turn S3 failures inside the block into one-line errors; a missing object stays FileNotFoundError."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise outage(exc, what, unreachable) from None


# --- small operations -----------------------------------------------------------------------

def read_bytes(fs: pafs.FileSystem, path: S3Path) -> bytes:
    """An object's bytes, or FileNotFoundError."""
    with fs.open_input_stream(path.path) as stream:
        return bytes(stream.read())


def write_bytes(fs: pafs.FileSystem, path: S3Path, data: bytes) -> None:
    """One PUT: readers see the old object or the new one, never a mix."""
    with fs.open_output_stream(path.path) as out:
        out.write(data)


def upload(fs: pafs.FileSystem, source: Path, target: S3Path) -> None:
    """A local file to one object, streamed (pyarrow uploads it in parts when it is large)."""
    with open(source, "rb") as src, fs.open_output_stream(target.path) as out:
        shutil.copyfileobj(src, out, 1 << 20)


def list_objects(fs: pafs.FileSystem, prefix: S3Path, recursive: bool = True) -> list[pafs.FileInfo]:
    """The objects (and, unless recursive, the sub-prefixes) under a prefix; [] when there are none."""
    selector = pafs.FileSelector(prefix.path, recursive=recursive, allow_not_found=True)
    return list(fs.get_file_info(selector))


def delete_prefix(fs: pafs.FileSystem, prefix: S3Path) -> None:
    for info in list_objects(fs, prefix):
        if info.type == pafs.FileType.File:
            fs.delete_file(info.path)
