"""A version's MANIFEST (sha256 of every file) and the check that turns stored bytes into a
VerifiedVersion: each file read once, checked, and kept, so loaders never read the store again."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from .errors import ModelError
from .fsutil import sha256_file
from .signing import SIGNATURE, signature_matches

MANIFEST = "MANIFEST"
UNLISTED = frozenset({MANIFEST, SIGNATURE})  # the files a MANIFEST does not list


@dataclass(frozen=True)
class VerifiedVersion:
    """A version's files, every one checked against its MANIFEST (and the MANIFEST against its
    signature when the deployment has a key): what loaders load from."""

    name: str
    version: str
    files: Mapping[str, bytes]
    digests: dict[str, str]
    signed: bool

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"

    def text(self, file: str) -> str:
        return self.files[file].decode("utf-8")


# Kept for the callers that only need what a check proved.
Verified = VerifiedVersion


def manifest_text(digests: Mapping[str, str]) -> str:
    return "".join(f"{digest}  {file}\n" for file, digest in sorted(digests.items()))


def write_manifest(folder: Path) -> None:
    digests = {p.relative_to(folder).as_posix(): sha256_file(p) for p in local_files(folder)}
    (folder / MANIFEST).write_text(manifest_text(digests))


def local_files(folder: Path) -> list[Path]:
    """A version folder's files, less the MANIFEST and its signature."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in UNLISTED)


def verify(name: str, version: str, listed: list[str], read: Callable[[str, str | None], bytes],
           key: bytes | None) -> VerifiedVersion:
    """Check a stored version: `listed` names the files present (MANIFEST and signature aside),
    `read(file, expected_digest)` returns a file's bytes or raises FileNotFoundError."""
    where = f"{name}:{version}"
    try:
        manifest = read(MANIFEST, None)
    except FileNotFoundError:
        raise ModelError(f"model {where} is refused: it has no MANIFEST (incomplete or not published by mljobs)") from None
    recorded = _signature(read) if key is not None else None
    if key is not None and (recorded is None or not signature_matches(recorded, manifest, key)):
        raise ModelError(f"model {where} is refused: it is not signed with this deployment's signing key")
    expected: dict[str, str] = {}
    for line in manifest.decode(errors="replace").splitlines():
        digest, _, file = line.partition("  ")
        if not file or len(digest) != 64:
            raise ModelError(f"model {where} is refused: its MANIFEST is malformed")
        expected[file] = digest
    for file in sorted(set(listed) - set(expected) - UNLISTED):
        raise ModelError(f"model {where} is refused: file '{file}' is not in its MANIFEST")
    files = {MANIFEST: manifest, **({SIGNATURE: recorded} if recorded is not None else {})}
    for file, digest in expected.items():
        try:
            data = read(file, digest) if file in listed else None
        except FileNotFoundError:
            data = None
        if data is None:
            raise ModelError(f"model {where} is refused: file '{file}' is missing")
        if hashlib.sha256(data).hexdigest() != digest:
            raise ModelError(f"model {where} is refused: file '{file}' does not match its MANIFEST (modified or truncated)")
        files[file] = data
    return VerifiedVersion(name, version, files, expected, signed=key is not None)


def _signature(read: Callable[[str, str | None], bytes]) -> bytes | None:
    try:
        return read(SIGNATURE, None)
    except FileNotFoundError:
        return None


def verify_folder(folder: Path, key: bytes | None = None, name: str | None = None, version: str | None = None) -> VerifiedVersion:
    """A version in a local folder (the store's, or one shipped to a Spark executor), checked."""

    def read(file: str, _digest: str | None) -> bytes:
        try:
            return (folder / file).read_bytes()
        except IsADirectoryError:
            raise FileNotFoundError(file) from None

    listed = [p.relative_to(folder).as_posix() for p in local_files(folder)] if folder.is_dir() else []
    return verify(name or folder.parent.name, version or folder.name, listed, read, key)
