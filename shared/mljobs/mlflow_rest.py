"""MLflow's tracking server over its REST API, with the standard library alone.

What mljobs needs from MLflow (create a run, log its parameters, metrics and tags, upload a few
artifacts; find and download a model by `runs:/` or `models:/` URI) is a handful of documented
REST calls, so the train image carries no MLflow client and its dozens of dependencies. Artifacts
go through the server's artifact proxy (`mlflow server`'s default, `mlflow-artifacts:` URIs).
Settings are MLflow's own variables: MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN or
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, MLFLOW_EXPERIMENT_NAME or MLFLOW_EXPERIMENT_ID.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Mapping

from .errors import MljobsError, ModelError, UsageError

TRACKING_URI = "MLFLOW_TRACKING_URI"
API, ARTIFACTS_API = "/api/2.0/mlflow", "/api/2.0/mlflow-artifacts/artifacts"
TIMEOUT = 30.0


class MlflowError(MljobsError):
    """The tracking server cannot be reached, or refused a call (exit 1: not the user's usage)."""


def tracking_uri(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    return environ.get(TRACKING_URI) or None


class SameHostCredentials(urllib.request.HTTPRedirectHandler):
    """Follows a redirect, but sends the credentials only to the host they were meant for."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


OPENER = urllib.request.build_opener(SameHostCredentials)


class MlflowRest:
    def __init__(self, uri: str, environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme not in ("http", "https"):
            raise UsageError(f"{TRACKING_URI}: give the http(s) address of an MLflow tracking server")
        if parts.username is not None or parts.password is not None:  # it would show in every log line and run record
            raise UsageError(f"{TRACKING_URI}: put no user or password in the address; "
                             "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)")
        self.base = uri.rstrip("/")
        self.headers: dict[str, str] = {}
        if environ.get("MLFLOW_TRACKING_TOKEN"):
            self.headers["Authorization"] = f"Bearer {environ['MLFLOW_TRACKING_TOKEN']}"
        elif environ.get("MLFLOW_TRACKING_USERNAME"):
            pair = f"{environ['MLFLOW_TRACKING_USERNAME']}:{environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()

    # --- plumbing ---------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json") -> bytes:
        url = self.base + path
        headers = {**self.headers, **({"Content-Type": content_type} if body is not None else {})}
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with OPENER.open(request, timeout=TIMEOUT) as reply:  # nosec B310 - http(s) only, checked above
                return bytes(reply.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            try:
                detail = json.loads(detail).get("message", detail)
            except ValueError:
                pass
            raise MlflowError(f"MLflow at {self.base} refused {method} {path.split('?')[0]}: {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MlflowError(f"MLflow at {self.base} cannot be reached: {reason}") from None

    def call(self, method: str, endpoint: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        if method == "GET":
            query = urllib.parse.urlencode(payload or {})
            raw = self.request("GET", f"{API}/{endpoint}" + (f"?{query}" if query else ""))
        else:
            raw = self.request(method, f"{API}/{endpoint}", json.dumps(payload or {}).encode())
        answer = json.loads(raw or b"{}")
        return answer if isinstance(answer, dict) else {}

    # --- tracking ---------------------------------------------------------------------------

    def experiment_id(self, environ: Mapping[str, str] | None = None) -> str:
        """MLFLOW_EXPERIMENT_ID, else MLFLOW_EXPERIMENT_NAME's (created if new), else the default (0)."""
        environ = os.environ if environ is None else environ
        if environ.get("MLFLOW_EXPERIMENT_ID"):
            return environ["MLFLOW_EXPERIMENT_ID"]
        name = environ.get("MLFLOW_EXPERIMENT_NAME")
        if not name:
            return "0"
        try:
            return str(self.call("GET", "experiments/get-by-name", {"experiment_name": name})["experiment"]["experiment_id"])
        except MlflowError as exc:
            if "RESOURCE_DOES_NOT_EXIST" not in str(exc) and " 404 " not in str(exc):
                raise
        return str(self.call("POST", "experiments/create", {"name": name})["experiment_id"])

    def upload(self, artifact_uri: str, name: str, data: bytes, content_type: str) -> None:
        self.request("PUT", f"{ARTIFACTS_API}/{proxied_path(artifact_uri)}/{urllib.parse.quote(name)}", data, content_type)

    # --- downloading ------------------------------------------------------------------------

    def download_tree(self, artifact_uri: str, into: Path) -> int:
        """Every file under an artifact URI into a folder; returns how many."""
        return self._download(proxied_path(artifact_uri), into)

    def _download(self, path: str, into: Path) -> int:
        listing = json.loads(self.request("GET", f"{ARTIFACTS_API}?{urllib.parse.urlencode({'path': path})}") or b"{}")
        count = 0
        for entry in listing.get("files", []):
            name = str(entry["path"]).rsplit("/", 1)[-1]
            if name in ("", ".", "..") or "/" in name or "\\" in name:
                raise ModelError(f"MLflow lists an artifact with a bad name: {entry['path']!r}")
            if entry.get("is_dir"):
                count += self._download(f"{path}/{name}", into / name)
            else:
                into.mkdir(parents=True, exist_ok=True)
                (into / name).write_bytes(self.request("GET", f"{ARTIFACTS_API}/{urllib.parse.quote(path)}/{urllib.parse.quote(name)}"))
                count += 1
        return count

    def model_artifact_uri(self, uri: str) -> str:
        """The artifact URI a `models:/NAME/VERSION`, `models:/NAME@ALIAS` or `runs:/RUN/PATH` names."""
        if uri.startswith("models:/"):
            name, _, version = uri[len("models:/"):].strip("/").partition("/")
            if "@" in name and not version:
                name, alias = name.split("@", 1)
                version = str(self.call("GET", "registered-models/alias", {"name": name, "alias": alias})["model_version"]["version"])
            if not name or not version.isdigit():
                raise UsageError(f"{uri}: use models:/NAME/VERSION or models:/NAME@ALIAS")
            return str(self.call("GET", "model-versions/get-download-uri", {"name": name, "version": version})["artifact_uri"])
        run_id, _, path = uri[len("runs:/"):].strip("/").partition("/")
        if not run_id or not path:
            raise UsageError(f"{uri}: use runs:/RUN_ID/PATH")
        run = self.call("GET", "runs/get", {"run_id": run_id})["run"]["info"]
        # MLflow 3 keeps a logged model apart from its run's files: look for it by name first.
        found = self.call("POST", "logged-models/search", {
            "experiment_ids": [run["experiment_id"]], "filter": f"name = '{path}'", "max_results": 100})
        for model in found.get("models", []):
            info = model.get("info", {})
            if info.get("source_run_id") == run_id and info.get("artifact_uri"):
                return str(info["artifact_uri"])
        return f"{run['artifact_uri'].rstrip('/')}/{path}"


def proxied_path(artifact_uri: str) -> str:
    """The path of an `mlflow-artifacts:` URI on the server's artifact proxy."""
    parts = urllib.parse.urlsplit(artifact_uri)
    if parts.scheme != "mlflow-artifacts":
        raise UsageError(
            f"the artifacts are at {artifact_uri}, which mljobs reaches only through the tracking server's "
            "artifact proxy (mlflow server's default, mlflow-artifacts: locations)"
        )
    return parts.path.strip("/")
