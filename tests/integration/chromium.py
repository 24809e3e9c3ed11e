"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol through a pipe
(--remote-debugging-pipe: JSON messages ending in NUL on fds 3 and 4), so a test needs no
websocket client and no driver. It loads a page, collects what the browser itself reports as
errors (console errors, uncaught exceptions, failed or 4xx/5xx loads, CSP violations), evaluates
expressions in the page for the test (the product's pages carry no script), and screenshots it."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-extensions",
         "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--window-size=1280,1600")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Loaded:
    url: str
    errors: list[str] = field(default_factory=list)  # what a user would see in the console as errors


class Chromium:
    def __init__(self, profile: Path, log: Path):
        commands_r, self._commands = os.pipe()
        self._replies, replies_w = os.pipe()
        # Out of the way of 3 and 4 first, so moving one end there cannot close the other.
        commands_r, replies_w = (self._high(fd) for fd in (commands_r, replies_w))
        binary = chromium_path()
        assert binary, "chromium is not installed (scripts/test installs Debian's package)"
        self._log = open(log, "wb")
        # Chromium reads commands on fd 3 and writes replies on fd 4: move the pipe ends there.
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{commands_r} 4>&{replies_w} {commands_r}<&- {replies_w}>&-', binary,
             *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(commands_r, replies_w), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        os.close(commands_r)
        os.close(replies_w)
        self._buffer, self._next_id = b"", 0
        self._events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable", session=self.session)

    @staticmethod
    def _high(fd: int) -> int:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 100)
        os.close(fd)
        return moved

    def call(self, method: str, session: str | None = None, timeout: float = 60, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            if "method" in reply:
                self._events.append(reply)
        raise AssertionError(f"{method}: no answer within {timeout} s")

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise AssertionError(f"chromium closed the pipe; its log: {self._log.name}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def load(self, url: str, timeout: float = 60) -> Loaded:
        """Navigate and wait for the load event (every image and style loaded or failed)."""
        self._events.clear()
        self.call("Page.navigate", session=self.session, url=url)
        deadline = time.monotonic() + timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self._events):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not finish loading within {timeout} s")
            reply = self._read()
            if "method" in reply:
                self._events.append(reply)
        self.call("Runtime.evaluate", session=self.session, expression="1")  # let late console events arrive
        return Loaded(url, self._errors())

    def _errors(self) -> list[str]:
        errors = []
        for event in self._events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                errors.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"{entry.get('source')}: {entry.get('text')} ({entry.get('url', '')})")
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                errors.append(f"load failed: {params.get('errorText')} ({params.get('blockedReason', '')})")
            elif method == "Network.responseReceived" and params.get("response", {}).get("status", 200) >= 400:
                errors.append(f"HTTP {params['response']['status']}: {params['response'].get('url')}")
        return errors

    def evaluate(self, expression: str) -> Any:
        """The JSON value of an expression evaluated in the page (by the test, through DevTools)."""
        result = self.call("Runtime.evaluate", session=self.session, expression=f"JSON.stringify({expression})",
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return json.loads(result["result"]["value"])

    def screenshot(self, path: Path) -> Path:
        shot = self.call("Page.captureScreenshot", session=self.session, format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except AssertionError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)
        self._log.close()
