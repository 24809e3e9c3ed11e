"""The store overview, read-only HTML for people: GET /ui (every model, its versions, aliases and
their history, the recent runs) and each version's page, report and plots under /ui/models/.

A page is rendered at most once per CACHE_SECONDS per worker, and versions (immutable) are
verified once, within a time budget per render (the rest are marked not checked yet until a later
render), so /ui answers fast on any store and a browser left reloading it costs the scoring
routes next to nothing (an unchanged page is a 304 to it). The run records are read from
MLJOBS_RUNS_DIR (default /runs) when the runs volume is mounted there."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from typing import Callable

from ...errors import MljobsError
from ...overview.collect import VersionCache, collect, is_report_file, model_info
from ...overview.html_parts import SERVER_LINKS
from ...overview.page import overview_page
from ...overview.recent_runs import RecentRuns
from ...overview.version_page import version_page
from ...store import ModelRef
from ..errors import ApiError
from ..http import HttpRequest, Reply
from ..routing import MLJOBS, Route
from ..service import ScoringService

CACHE_SECONDS = 2.0
VERIFY_BUDGET_SECONDS = 0.1  # of a page's render spent verifying versions not verified yet
HTML = "text/html; charset=utf-8"
# No script may run and nothing may load from elsewhere: the page is plain HTML, styles and SVG.
HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


class Page:
    """A rendered page: its bytes, its ETag, and when it was rendered."""

    def __init__(self, text: str):
        self.body = text.encode("utf-8")
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'
        self.rendered = time.monotonic()

    def reply(self, request: HttpRequest) -> Reply:
        """The page, or 304 Not Modified to a browser that has this very page already."""
        headers = {**HEADERS, "ETag": self.etag}
        if request.headers.get("if-none-match") == self.etag:
            return Reply(b"", 304, media_type=HTML, headers=headers)
        return Reply(self.body, media_type=HTML, headers=headers)


class UiState:
    """One worker's caches: verified versions, parsed run records, and recently rendered pages."""

    def __init__(self, service: ScoringService, runs_dir: str):
        self.versions = VersionCache(service.store)
        self.runs = RecentRuns(runs_dir)
        self._pages: dict[str, Page] = {}
        self._lock = threading.Lock()

    def page(self, key: str, render: Callable[[], str]) -> Page:
        with self._lock:
            cached = self._pages.get(key)
        if cached is not None and time.monotonic() - cached.rendered < CACHE_SECONDS:
            return cached
        page = Page(render())
        with self._lock:
            self._pages[key] = page
        return page


_STATES: weakref.WeakKeyDictionary[ScoringService, UiState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def state_of(service: ScoringService) -> UiState:
    with _STATES_LOCK:
        if service not in _STATES:
            _STATES[service] = UiState(service, os.environ.get("MLJOBS_RUNS_DIR") or "/runs")
        return _STATES[service]


def overview(service: ScoringService, request: HttpRequest) -> Reply:
    ui = state_of(service)
    def render() -> str:
        return overview_page(collect(service.store, ui.versions, ui.runs, VERIFY_BUDGET_SECONDS), SERVER_LINKS)

    return ui.page("/ui", render).reply(request)


def version_file(service: ScoringService, request: HttpRequest) -> Reply:
    name, version, file = request.params["name"], request.params["version"], request.params["file"]
    try:
        ModelRef.parse(f"{name}:{version}")
        known = version in service.store.versions(name)
    except MljobsError:
        known = False
    if not known:
        raise ApiError(404, "not_found", f"the store has no version {version} of a model '{name}'")
    ui = state_of(service)
    if file == "index.html":
        return ui.page(f"{name}:{version}", lambda: _version_page(service, ui, name, version)).reply(request)
    data = ui.versions.report_file(name, version, file) if is_report_file(file) else None
    if data is None:
        raise ApiError(404, "not_found", f"version {name}:{version} has no report file '{file}' to show (or failed verification)")
    media = HTML if file.endswith(".html") else "image/svg+xml" if file.endswith(".svg") else "image/png"
    return Reply(data, media_type=media, headers=dict(HEADERS))


def _version_page(service: ScoringService, ui: UiState, name: str, version: str) -> str:
    model = model_info(service.store, ui.versions, name, time.monotonic() + VERIFY_BUDGET_SECONDS)
    return version_page(model, ui.versions.info(name, version), SERVER_LINKS)  # this version always checked


PAGE = {"200": {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
        "304": {"description": "not modified: the page the client names in If-None-Match"}}
FILE = {"200": {"description": "the page, or a plot (PNG)",
                "content": {"text/html": {"schema": {"type": "string"}}, "image/png": {"schema": {"type": "string", "format": "binary"}}}},
        "304": PAGE["304"]}

ROUTES = [
    Route("/ui", "GET", overview, MLJOBS, "The store overview: models, versions, aliases, recent runs (HTML)", replies=PAGE),
    Route("/ui/models/<name>/<version>/<file>", "GET", version_file, MLJOBS,
          "A version's page (index.html), its training report (report.html) or one of its plots", replies=FILE,
          errors={"404": "no such version, or no such report file"}),
]
