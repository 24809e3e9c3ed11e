"""Bounded HTTP load from a few threads, counting status codes, answering versions and errors."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import requests

from tests.unit.test_serve import GOOD


class Load:
    def __init__(self, url: str, threads: int = 3, max_seconds: float = 60, body: Any = None, timeout: float = 10):
        self.url, self.stop, self.deadline = url, threading.Event(), time.monotonic() + max_seconds
        self.body, self.timeout = GOOD if body is None else body, timeout
        self.statuses: Counter = Counter()
        self.versions: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                reply = session.post(self.url, json=self.body, timeout=self.timeout)
                self.statuses[reply.status_code] += 1
                if reply.status_code == 200:
                    self.versions.append((time.monotonic(), reply.headers["X-Model-Version"]))
            except requests.RequestException as exc:
                self.errors.append(type(exc).__name__)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.timeout + 5)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    def failures(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300) + len(self.errors)
