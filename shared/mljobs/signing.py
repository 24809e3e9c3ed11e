"""Model signatures: an HMAC of a version's MANIFEST under a key the deployment holds.

The MANIFEST alone catches damage, but whoever can write the models volume can also rewrite a
MANIFEST. With a signing key set (MLJOBS_SIGNING_KEY_FILE, or MLJOBS_SIGNING_KEY), training signs
every version it publishes and every loader refuses a version whose signature does not match, so
only holders of the key can publish. Native (compiled) predictors run only from signed versions.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Mapping

from .errors import UsageError

SIGNATURE = "MANIFEST.sig"
KEY_VARIABLE, KEY_FILE_VARIABLE = "MLJOBS_SIGNING_KEY", "MLJOBS_SIGNING_KEY_FILE"
MIN_KEY_BYTES = 16


def signing_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The deployment's key: from the file MLJOBS_SIGNING_KEY_FILE names (a Docker secret, say),
    else MLJOBS_SIGNING_KEY; None when neither is set. Read once, at the edge (a job's entry
    point, the server's app factory), and handed to the ModelStore."""
    environ = os.environ if environ is None else environ
    if environ.get(KEY_FILE_VARIABLE):
        try:
            key = Path(environ[KEY_FILE_VARIABLE]).read_bytes().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the signing key file {environ[KEY_FILE_VARIABLE]}: {exc.strerror}") from exc
    elif environ.get(KEY_VARIABLE):
        key = environ[KEY_VARIABLE].strip().encode()
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise UsageError(f"the signing key is too short: use at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)")
    return key


def signature(manifest: bytes, key: bytes) -> str:
    return hmac.new(key, manifest, hashlib.sha256).hexdigest()


def sign(folder: Path, manifest_name: str, key: bytes) -> None:
    (folder / SIGNATURE).write_text(signature((folder / manifest_name).read_bytes(), key) + "\n")


def signature_matches(recorded: bytes, manifest: bytes, key: bytes) -> bool:
    """Whether a MANIFEST.sig's content is this key's signature of `manifest`."""
    return hmac.compare_digest(recorded.decode(errors="replace").strip(), signature(manifest, key))
