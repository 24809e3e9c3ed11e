"""The model store: versions of named models, and aliases that point at them.

    <root>/<name>/<version>/       immutable once published; MANIFEST (sha256 of every file) last,
                                   then MANIFEST.sig when a signing key is set (see signing.py)
    <root>/<name>/aliases/<alias>  the version an alias points to, replaced whole
    <root>/<name>/aliases/.history-<alias>  the versions it pointed to before, for rollback
    <root>/<name>/aliases/.events-<alias>   every move of the alias, one JSON line each (alias_events)

The root is a folder (a volume; the default) or `s3://bucket/prefix` (storage.py, s3storage.py
say how each makes a version appear whole). The signing key is handed in by the caller, which
reads it once from the environment (signing.signing_key). Loaders get a VerifiedVersion from
open_version: every file read once and checked, so nothing is read from the store after the check.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .errors import ModelError, UsageError
from .manifest import MANIFEST, Verified, VerifiedVersion, verify, verify_folder, write_manifest
from .objectstore import S3Path, is_s3
from .signing import SIGNATURE, sign
from .storage import NAME_PATTERN, LocalStorage, Storage

__all__ = ["MANIFEST", "SIGNATURE", "ModelRef", "ModelStore", "Verified", "VerifiedVersion", "verify_manifest",
           "write_manifest", "version_label", "store_location"]

ALIASES = "aliases"
LATEST, PRODUCTION = "latest", "production"
STORE_VARIABLE = "MLJOBS_STORE"

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


def store_location(models_dir: str | Path | None, store: str | None = None, environ: dict[str, str] | None = None) -> str:
    """Where a job's store is: --store, else MLJOBS_STORE, else the models folder."""
    environ = dict(os.environ) if environ is None else environ
    location = store or environ.get(STORE_VARIABLE) or models_dir
    if not location:
        raise UsageError("no model store: set MLJOBS_STORE (a folder or s3://bucket/prefix) or --models-dir")
    return str(location)


class ModelStore:
    def __init__(self, location: str | Path, key: bytes | None = None, storage: Storage | None = None):
        """`location`: a folder, or s3://bucket/prefix; `key`: the deployment's signing key, if any."""
        self.key = key
        if storage is not None:
            self.storage = storage
        elif is_s3(location):
            from .s3storage import S3Storage

            self.storage = S3Storage(S3Path.parse(str(location)))
        else:
            self.storage = LocalStorage(Path(location))
        self.location = self.storage.location

    @property
    def root(self) -> Path:
        """The folder of a local store (for tools and tests that look inside it)."""
        if not isinstance(self.storage, LocalStorage):
            raise UsageError(f"the model store {self.location} is not a local folder")
        return self.storage.root

    def model_dir(self, name: str) -> Path:
        return self.root / name

    # --- writing -----------------------------------------------------------------------------

    def publish(self, name: str, write_files: Callable[[Path], None]) -> str:
        """Publish a new version of `name` from the files `write_files` puts in a folder."""
        ModelRef.parse(name)

        def build(folder: Path) -> None:
            write_files(folder)
            write_manifest(folder)
            if self.key is not None:
                sign(folder, MANIFEST, self.key)

        version = self.storage.publish(name, build)
        self.set_alias(name, LATEST, version, "published")
        return version

    def set_alias(self, name: str, alias: str, version: str, action: str = "set") -> str | None:
        """Point `alias` at `version`; returns the version it pointed to before, if any."""
        ModelRef.parse(f"{name}@{alias}")
        versions = self.versions(name)
        if version not in versions:
            raise ModelError(f"model '{name}' has no version {version} (versions: {', '.join(versions) or 'none'})")
        previous = self.aliases(name).get(alias)
        if previous not in (None, version):
            self._write_history(name, alias, self.alias_history(name, alias) + [previous])
        self.storage.replace(f"{name}/{ALIASES}/{alias}", (version + "\n").encode())
        self._record_event(name, alias, version, previous, action)
        return previous

    def promote(self, name: str, version: str, alias: str) -> str | None:
        """Point `alias` at `version` after verifying its files; returns the previous version."""
        if version in self.versions(name):
            self.open_version(name, version)
        return self.set_alias(name, alias, version, "promoted")

    def rollback(self, name: str, alias: str) -> str:
        """Point `alias` back at the version it pointed to before its last move, after verifying
        its files as promote does; returns it. A refused version leaves the alias where it was."""
        history = self.alias_history(name, alias)
        if not history:
            raise ModelError(f"alias '{name}@{alias}' has no earlier version to roll back to")
        previous = history[-1]
        if previous not in self.versions(name):
            raise ModelError(f"cannot roll back {name}@{alias}: model '{name}' has no version {previous} any more")
        self.open_version(name, previous)
        moved_from = self.aliases(name).get(alias)
        self.storage.replace(f"{name}/{ALIASES}/{alias}", (previous + "\n").encode())
        self._write_history(name, alias, history[:-1])
        self._record_event(name, alias, previous, moved_from, "rolled back")
        return previous

    def alias_history(self, name: str, alias: str) -> list[str]:
        return self._read_text(f"{name}/{ALIASES}/.history-{alias}").split()

    def alias_events(self, name: str) -> list[dict[str, str | None]]:
        """Every recorded move of every alias of `name`, oldest first: time, alias, version,
        previous and action (published, promoted, rolled back or set)."""
        events: list[dict[str, str | None]] = []
        for file in self.storage.files_in(f"{name}/{ALIASES}"):
            if file.startswith(".events-"):
                for line in self._read_text(f"{name}/{ALIASES}/{file}").splitlines():
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash: the others still count
                    if isinstance(event, dict):
                        events.append(event)
        return sorted(events, key=lambda e: str(e.get("time") or ""))

    def _record_event(self, name: str, alias: str, version: str, previous: str | None, action: str) -> None:
        # Appended by rewriting the small file whole (as .history-), so S3 and folders work alike.
        event = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "alias": alias,
                 "version": version, "previous": previous, "action": action}
        path = f"{name}/{ALIASES}/.events-{alias}"
        self.storage.replace(path, (self._read_text(path) + json.dumps(event) + "\n").encode())

    def _write_history(self, name: str, alias: str, versions: list[str]) -> None:
        self.storage.replace(f"{name}/{ALIASES}/.history-{alias}", "".join(v + "\n" for v in versions).encode())

    def _read_text(self, path: str) -> str:
        try:
            return self.storage.read(path).decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # --- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        return self.storage.names()

    def versions(self, name: str) -> list[str]:
        return self.storage.versions(name)

    def aliases(self, name: str) -> dict[str, str]:
        found = {}
        for alias in sorted(a for a in self.storage.files_in(f"{name}/{ALIASES}") if not a.startswith(".")):
            version = self._read_text(f"{name}/{ALIASES}/{alias}").strip()
            if version:
                found[alias] = version
        return found

    def resolve(self, ref: ModelRef) -> str:
        """The version a reference means; default alias `production`, else `latest`."""
        versions = self.versions(ref.name)
        if not versions:
            known = ", ".join(self.names()) or "none yet; train one first"
            raise ModelError(f"model '{ref.name}' does not exist in {self.location} (models: {known})")
        if ref.version:
            if ref.version not in versions:
                raise ModelError(f"model '{ref.name}' has no version {ref.version}")
            return ref.version
        aliases = self.aliases(ref.name)
        alias = ref.alias or (PRODUCTION if PRODUCTION in aliases else LATEST)
        if alias not in aliases:
            raise ModelError(f"model '{ref.name}' has no alias '{alias}' (aliases: {', '.join(aliases) or 'none'})")
        return aliases[alias]

    def version_files(self, name: str, version: str) -> list[str]:
        """The files a version holds now (unchecked: open_version checks them)."""
        return self.storage.version_files(name, version)

    def open_version(self, name: str, version: str) -> VerifiedVersion:
        """The version's files, each read once and checked against its MANIFEST (and the MANIFEST
        against its signature when this store has a key): what loaders load from."""
        ModelRef.parse(f"{name}:{version}")
        return verify(name, version, self.storage.version_files(name, version),
                      lambda file, digest: self.storage.read_version_file(name, version, file, digest), self.key)


def version_label(folder: Path) -> str:
    """`name:version` for a version's folder, as errors name it."""
    return f"{folder.parent.name}:{folder.name}"


def verify_manifest(folder: Path, key: bytes | None = None) -> VerifiedVersion:
    """A version in a local folder, checked (see ModelStore.open_version)."""
    return verify_folder(folder, key)
