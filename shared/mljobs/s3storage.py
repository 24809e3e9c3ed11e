"""A model store in S3 (`s3://bucket/prefix`), with the folder store's guarantees where an object
store has no rename:

- publish uploads every file of a version, then its signature, then its MANIFEST: the MANIFEST is
  the commit. A version without one is not listed, so a killed publish leaves nothing visible;
  its number is never reused (its leftover objects could mix with a retry's).
- an alias and its history are single objects, replaced whole by one PUT.
- readers keep verified files in a local cache keyed by their sha256 and fetch only what the
  cache lacks; every load still reads the MANIFEST from S3 and checks every byte against it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from pyarrow import fs as pafs

from .fsutil import atomic_write_bytes
from .manifest import MANIFEST
from .objectstore import S3Path, delete_prefix, filesystem, list_objects, read_bytes, translated, upload, write_bytes
from .signing import SIGNATURE
from .storage import NAME_PATTERN

CACHE_VARIABLE = "MLJOBS_CACHE_DIR"


def default_cache() -> Path:
    """A private folder under the temp dir (a tmpfs in the containers), one per user."""
    return Path(os.environ.get(CACHE_VARIABLE) or Path(tempfile.gettempdir()) / f"mljobs-cache-{os.getuid()}")


class S3Storage:
    def __init__(self, root: S3Path, fs: pafs.FileSystem | None = None, cache: Path | None = None):
        self.root = root
        self.fs = fs or filesystem()
        self.cache = cache or default_cache()
        self.location = str(root)
        self.what = f"the model store {root}"

    def names(self) -> list[str]:
        with translated(self.what):
            children = list_objects(self.fs, self.root, recursive=False)
        return sorted(i.base_name for i in children if i.type == pafs.FileType.Directory and NAME_PATTERN.match(i.base_name))

    def _numbered(self, name: str) -> dict[str, set[str]]:
        """Every numbered prefix of a model (complete or not) and the files under it."""
        model = self.root / name
        with translated(self.what):
            objects = list_objects(self.fs, model)
        found: dict[str, set[str]] = {}
        for info in objects:
            if info.type != pafs.FileType.File:
                continue
            version, _, file = S3Path(self.root.bucket, info.path.partition("/")[2]).relative_to(model).partition("/")
            if version.isdigit() and file:
                found.setdefault(version, set()).add(file)
        return found

    def versions(self, name: str) -> list[str]:
        return sorted((v for v, files in self._numbered(name).items() if MANIFEST in files), key=int)

    def read(self, path: str) -> bytes:
        with translated(self.what):
            return read_bytes(self.fs, self.root / path)

    def files_in(self, path: str) -> list[str]:
        with translated(self.what):
            children = list_objects(self.fs, self.root / path, recursive=False)
        return sorted(i.base_name for i in children if i.type == pafs.FileType.File)

    def replace(self, path: str, data: bytes) -> None:
        with translated(self.what):
            write_bytes(self.fs, self.root / path, data)

    def version_files(self, name: str, version: str) -> list[str]:
        return sorted(self._numbered(name).get(version, set()))

    def read_version_file(self, name: str, version: str, file: str, digest: str | None) -> bytes:
        cached = self.cache / "sha256" / digest if digest else None
        if cached is not None and cached.is_file():
            data = cached.read_bytes()
            if hashlib.sha256(data).hexdigest() == digest:
                return data
        data = self.read(f"{name}/{version}/{file}")
        if cached is not None and hashlib.sha256(data).hexdigest() == digest:
            self._keep(cached, data)
        return data

    def _keep(self, cached: Path, data: bytes) -> None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_bytes(cached, data)
        except OSError:  # a full or read-only cache only costs a download next time
            pass

    def publish(self, name: str, build: Callable[[Path], None]) -> str:
        staging = Path(tempfile.mkdtemp(prefix="mljobs-publish-"))
        try:
            build(staging)
            version = str(max((int(v) for v in self._numbered(name)), default=0) + 1)
            target = self.root / name / version
            files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
            last = [f for f in (SIGNATURE, MANIFEST) if f in files]
            with translated(self.what):
                try:
                    for file in [f for f in files if f not in last] + last:
                        upload(self.fs, staging / file, target / file)
                except BaseException:
                    _forget(self.fs, target)
                    raise
            return version
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _forget(fs: pafs.FileSystem, target: S3Path) -> None:
    """Remove what a failed publish uploaded, if the store still answers (it is invisible anyway)."""
    try:
        delete_prefix(fs, target)
    except OSError:
        pass
