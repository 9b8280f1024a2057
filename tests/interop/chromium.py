"""Headless Chromium driven over the DevTools protocol (CDP) with the `websockets` client.

Pure Python: no Node or Playwright. Chromium prints its DevTools address on stderr
("DevTools listening on ws://..."), the browser session creates a page target, and page
scripts are awaited with Runtime.evaluate(awaitPromise=True), so tests wait on page events
instead of sleeping.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

BASE_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
LISTENING = "DevTools listening on "


class DevToolsError(RuntimeError):
    """Chromium answered a CDP command with an error, or a page script threw."""


class Page:
    """One page target, attached with a flat CDP session on the browser connection."""

    def __init__(self, browser: Chromium, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.call(method, session_id=self.session_id, **params)

    def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Open url and return once its load event fired (its inline scripts have run)."""
        self.call("Page.enable")
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise DevToolsError(f"navigation to {url} failed: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session_id, timeout)

    def evaluate(self, expression: str) -> Any:
        """The value of a page expression; a promise is awaited (Chromium does the waiting)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")


class Chromium:
    """A headless Chromium process and a CDP connection to its browser target."""

    def __init__(self, executable: str, profile: Path, *flags: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.process = subprocess.Popen(
            [executable, *BASE_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             *flags, "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        endpoint: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self.read_stderr, args=(endpoint,), daemon=True)
        self.reader.start()
        try:
            url = endpoint.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise DevToolsError("Chromium did not print its DevTools address:\n" + self.log) from None
        self.ws: ClientConnection = connect(url, max_size=None, open_timeout=timeout)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def read_stderr(self, endpoint: queue.Queue[str]) -> None:
        """Hand over the DevTools address, then keep draining stderr (its tail helps failures)."""
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_tail.append(line)
            if line.startswith(LISTENING):
                endpoint.put(line[len(LISTENING):].strip())

    @property
    def log(self) -> str:
        return "".join(self.stderr_tail)

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            message: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError:
            raise DevToolsError("no answer from Chromium in time:\n" + self.log) from None
        return message

    def call(self, method: str, session_id: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one CDP command and return its result; events seen meanwhile are kept."""
        command: dict[str, Any] = {"id": next(self.ids), "method": method, "params": params}
        if session_id is not None:
            command["sessionId"] = session_id
        self.ws.send(json.dumps(command))
        while True:
            message = self.receive(self.timeout)
            if message.get("id") == command["id"]:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_event(self, method: str, session_id: str | None, timeout: float) -> dict[str, Any]:
        """The first event named method (of the session), seen already or arriving in time."""
        def matches(event: dict[str, Any]) -> bool:
            return event.get("method") == method and event.get("sessionId") == session_id

        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if matches(event):
                    self.events.remove(event)
                    return event
            message = self.receive(max(deadline - time.monotonic(), 0.0))
            if "method" in message:
                self.events.append(message)

    def new_page(self) -> Page:
        target = self.call("Target.createTarget", url="about:blank")
        attached = self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        return Page(self, attached["sessionId"])

    def close(self) -> None:
        """Ask the browser to exit; kill our own process if it does not."""
        with contextlib.suppress(Exception):
            if hasattr(self, "ws"):
                self.ws.send(json.dumps({"id": 0, "method": "Browser.close", "params": {}}))
                self.ws.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(5)


@contextlib.contextmanager
def chromium(executable: str, profile: Path, *flags: str) -> Iterator[Chromium]:
    """Run headless Chromium for the duration of the block."""
    browser = Chromium(executable, profile, *flags)
    try:
        yield browser
    finally:
        browser.close()
