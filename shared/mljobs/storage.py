"""Where a model store keeps its bytes: the few operations ModelStore needs, and the local-folder
kind (a volume, an NFS export). The object-store kind is in s3storage.py.

Paths are relative to the store's root and use '/': `<name>/<version>/<file>`,
`<name>/aliases/<alias>`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable, Protocol

from .fsutil import atomic_write_bytes, fsync_dir, fsync_tree, remove_stale_staging, staging_name

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Storage(Protocol):
    location: str  # as errors name the store: a folder, or s3://bucket/prefix

    def names(self) -> list[str]:
        """The model names in the store."""

    def versions(self, name: str) -> list[str]:
        """The published versions of a model, oldest first (complete ones only where that can be
        told from the listing: an object store's versions without a MANIFEST are not listed)."""

    def read(self, path: str) -> bytes:
        """A file's bytes; FileNotFoundError when there is none."""

    def files_in(self, path: str) -> list[str]:
        """The names of the files directly in a folder (or under a prefix); [] if there is none."""

    def replace(self, path: str, data: bytes) -> None:
        """Write a small file whole: readers see the old content or the new, never a mix."""

    def version_files(self, name: str, version: str) -> list[str]:
        """The files of a version, relative to it (MANIFEST and signature included)."""

    def read_version_file(self, name: str, version: str, file: str, digest: str | None) -> bytes:
        """One file of a version; `digest` is what its MANIFEST says it must hash to, if known."""

    def publish(self, name: str, build: Callable[[Path], None]) -> str:
        """Build a version in a local staging folder with `build` (which writes the MANIFEST
        last), then make it visible whole as the next version; returns the version."""


class LocalStorage:
    """A folder: a version is built in a hidden staging folder beside its final place, fsynced
    and renamed, so a reader never sees half of one and a killed writer leaves nothing visible."""

    def __init__(self, root: Path):
        self.root = root
        self.location = str(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name))

    def versions(self, name: str) -> list[str]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted((p.name for p in folder.iterdir() if p.name.isdigit()), key=int)

    def read(self, path: str) -> bytes:
        try:
            return (self.root / path).read_bytes()
        except IsADirectoryError:
            raise FileNotFoundError(path) from None

    def files_in(self, path: str) -> list[str]:
        folder = self.root / path
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def replace(self, path: str, data: bytes) -> None:
        atomic_write_bytes(self.root / path, data)

    def version_files(self, name: str, version: str) -> list[str]:
        folder = self.root / name / version
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    def read_version_file(self, name: str, version: str, file: str, digest: str | None) -> bytes:
        return self.read(f"{name}/{version}/{file}")

    def publish(self, name: str, build: Callable[[Path], None]) -> str:
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(model_dir)
        staging = model_dir / staging_name()
        staging.mkdir()
        try:
            build(staging)
            fsync_tree(staging)
            version = self._rename_to_next_version(name, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(model_dir)
        return version

    def _rename_to_next_version(self, name: str, staging: Path) -> str:
        # Another trainer may publish at the same moment: rename fails on an existing folder, retry.
        while True:
            version = str(max((int(v) for v in self.versions(name)), default=0) + 1)
            try:
                os.rename(staging, staging.parent / version)
                return version
            except OSError:
                if not (staging.parent / version).exists():
                    raise
