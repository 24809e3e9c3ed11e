"""The model store on the `models` volume.

    <root>/<name>/<version>/       immutable once published; MANIFEST (sha256 of every file) last,
                                   then MANIFEST.sig when a signing key is set (see signing.py)
    <root>/<name>/aliases/<alias>  the version an alias points to, replaced atomically
    <root>/<name>/aliases/.history-<alias>  the versions it pointed to before, for rollback

A version is built in a hidden staging folder beside its final place, fsynced and renamed, so a
reader never sees half of one and a killed writer leaves nothing visible.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ModelError, UsageError
from .fsutil import atomic_write_text, fsync_dir, fsync_tree, remove_stale_staging, sha256_file, staging_name
from .signing import SIGNATURE, sign, signed_by, signing_key

MANIFEST = "MANIFEST"
ALIASES = "aliases"
LATEST, PRODUCTION = "latest", "production"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ModelRef:
    """A model as a user names it: `name`, `name@alias` or `name:version`."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, alias, version = text, None, None
        if "@" in text:
            name, alias = text.split("@", 1)
        elif ":" in text:
            name, version = text.split(":", 1)
        for part in (name, alias, version):
            if part is not None and not NAME_PATTERN.match(part):
                raise UsageError(
                    f"bad model reference '{text}': use NAME, NAME@ALIAS or NAME:VERSION "
                    "(letters, digits, '.', '_', '-')"
                )
        return cls(name, alias, version)

    def __str__(self) -> str:
        return self.name + (f"@{self.alias}" if self.alias else "") + (f":{self.version}" if self.version else "")


class ModelStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def model_dir(self, name: str) -> Path:
        return self.root / name

    # --- writing -----------------------------------------------------------------------------

    def publish(self, name: str, write_files: Callable[[Path], None]) -> str:
        """Publish a new version of `name` from the files `write_files` puts in a folder."""
        ModelRef.parse(name)
        model_dir = self.model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(model_dir)
        staging = model_dir / staging_name()
        staging.mkdir()
        try:
            write_files(staging)
            write_manifest(staging)
            key = signing_key()
            if key is not None:
                sign(staging, MANIFEST, key)
            fsync_tree(staging)
            version = self._rename_to_next_version(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(model_dir)
        self.set_alias(name, LATEST, version)
        return version

    def _rename_to_next_version(self, staging: Path) -> str:
        # Another trainer may publish at the same moment: rename fails on an existing folder, retry.
        while True:
            version = str(max((int(v) for v in self.versions(staging.parent.name)), default=0) + 1)
            try:
                os.rename(staging, staging.parent / version)
                return version
            except OSError:
                if not (staging.parent / version).exists():
                    raise

    def set_alias(self, name: str, alias: str, version: str) -> str | None:
        """Point `alias` at `version`; returns the version it pointed to before, if any."""
        ModelRef.parse(f"{name}@{alias}")
        if version not in self.versions(name):
            raise ModelError(f"model '{name}' has no version {version} (versions: {', '.join(self.versions(name)) or 'none'})")
        previous = self.aliases(name).get(alias)
        if previous not in (None, version):
            self._write_history(name, alias, self.alias_history(name, alias) + [previous])
        atomic_write_text(self.model_dir(name) / ALIASES / alias, version + "\n")
        return previous

    def promote(self, name: str, version: str, alias: str) -> str | None:
        """Point `alias` at `version` after verifying its files; returns the previous version."""
        if version in self.versions(name):
            self.verified_dir(name, version)
        return self.set_alias(name, alias, version)

    def rollback(self, name: str, alias: str) -> str:
        """Point `alias` back at the version it pointed to before its last move, after verifying
        its files as promote does; returns it. A refused version leaves the alias where it was."""
        history = self.alias_history(name, alias)
        if not history:
            raise ModelError(f"alias '{name}@{alias}' has no earlier version to roll back to")
        previous = history[-1]
        if previous not in self.versions(name):
            raise ModelError(f"cannot roll back {name}@{alias}: model '{name}' has no version {previous} any more")
        self.verified_dir(name, previous)
        atomic_write_text(self.model_dir(name) / ALIASES / alias, previous + "\n")
        self._write_history(name, alias, history[:-1])
        return previous

    def alias_history(self, name: str, alias: str) -> list[str]:
        path = self.model_dir(name) / ALIASES / f".history-{alias}"
        return path.read_text().split() if path.is_file() else []

    def _write_history(self, name: str, alias: str, versions: list[str]) -> None:
        atomic_write_text(self.model_dir(name) / ALIASES / f".history-{alias}", "".join(v + "\n" for v in versions))

    # --- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name))

    def versions(self, name: str) -> list[str]:
        folder = self.model_dir(name)
        if not folder.is_dir():
            return []
        return sorted((p.name for p in folder.iterdir() if p.name.isdigit()), key=int)

    def aliases(self, name: str) -> dict[str, str]:
        folder = self.model_dir(name) / ALIASES
        if not folder.is_dir():
            return {}
        return {p.name: p.read_text().strip() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}

    def resolve(self, ref: ModelRef) -> str:
        """The version a reference means; default alias `production`, else `latest`."""
        if not self.versions(ref.name):
            known = ", ".join(self.names()) or "none yet; train one first"
            raise ModelError(f"model '{ref.name}' does not exist in {self.root} (models: {known})")
        if ref.version:
            if ref.version not in self.versions(ref.name):
                raise ModelError(f"model '{ref.name}' has no version {ref.version}")
            return ref.version
        aliases = self.aliases(ref.name)
        alias = ref.alias or (PRODUCTION if PRODUCTION in aliases else LATEST)
        if alias not in aliases:
            raise ModelError(f"model '{ref.name}' has no alias '{alias}' (aliases: {', '.join(aliases) or 'none'})")
        return aliases[alias]

    def verified_dir(self, name: str, version: str) -> Path:
        """The version's folder, after checking every file against its MANIFEST."""
        folder = self.model_dir(name) / version
        verify_manifest(folder)
        return folder


def write_manifest(folder: Path) -> None:
    lines = [f"{sha256_file(p)}  {p.relative_to(folder).as_posix()}" for p in _files(folder)]
    (folder / MANIFEST).write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class Verified:
    """What a check of a version proved: each file's digest, and whether a key holder signed it."""

    digests: dict[str, str]
    signed: bool


def version_label(folder: Path) -> str:
    """`name:version` for a version's folder, as errors name it."""
    return f"{folder.parent.name}:{folder.name}"


def verify_manifest(folder: Path) -> Verified:
    """Check every file against the MANIFEST, and the MANIFEST against its signature when this
    deployment has a signing key (a version without a matching signature is then refused)."""
    where = version_label(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ModelError(f"model {where} is refused: it has no MANIFEST (incomplete or not published by mljobs)")
    manifest_bytes = manifest.read_bytes()
    key = signing_key()
    if key is not None and not signed_by(folder, manifest_bytes, key):
        raise ModelError(f"model {where} is refused: it is not signed with this deployment's signing key")
    expected: dict[str, str] = {}
    for line in manifest_bytes.decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if not name or len(digest) != 64:
            raise ModelError(f"model {where} is refused: its MANIFEST is malformed")
        expected[name] = digest
    present = {p.relative_to(folder).as_posix(): p for p in _files(folder)}
    for name in sorted(set(present) - set(expected)):
        raise ModelError(f"model {where} is refused: file '{name}' is not in its MANIFEST")
    for name, digest in expected.items():
        if name not in present:
            raise ModelError(f"model {where} is refused: file '{name}' is missing")
        if sha256_file(present[name]) != digest:
            raise ModelError(f"model {where} is refused: file '{name}' does not match its MANIFEST (modified or truncated)")
    return Verified(expected, signed=key is not None)


def _files(folder: Path) -> list[Path]:
    unlisted = {folder / MANIFEST, folder / SIGNATURE}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p not in unlisted)
