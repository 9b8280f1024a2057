"""WebSocket over HTTP/2 (RFC 8441) with headless Chromium, a client we did not write.

Chromium sends a WebSocket as an Extended CONNECT stream only on an existing h2 connection
whose server advertised SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3), so the page that opens
the socket is itself loaded from the same origin over h2 first.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_server
from tests.interop.chromium import chromium
from tests.interop.conftest import require_tool

# Every test here runs once per HTTP/2 engine (nghttp2, h2): see the http2_engine fixture.
pytestmark = pytest.mark.usefixtures("http2_engine")

PAGE = b"""<!doctype html><html><body><div id="out">waiting</div><script>
window.echo = new Promise((resolve, reject) => {
  const ws = new WebSocket("wss://" + location.host + "/ws");
  ws.onopen = () => ws.send("ping from chromium");
  ws.onmessage = (event) => {
    document.getElementById("out").textContent = event.data;
    ws.close(1000, "done");
  };
  ws.onclose = (event) => resolve({
    echo: document.getElementById("out").textContent, code: event.code,
    page: performance.getEntriesByType("navigation")[0].nextHopProtocol,
  });
  ws.onerror = () => reject(new Error("websocket error"));
});
</script></body></html>"""


class EchoApp:
    """Serves the page over HTTP and echoes WebSocket messages; records each socket's scope."""

    def __init__(self) -> None:
        self.sockets: list[dict[str, Any]] = []
        self.closed = threading.Event()
        self.close_codes: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
        elif scope["type"] == "http":
            status, body = (200, PAGE) if scope["path"] == "/" else (404, b"")
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"text/html; charset=utf-8")]})
            await send({"type": "http.response.body", "body": body})

    async def websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.sockets.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.close_codes.append(message["code"])
                self.closed.set()
                return
            await send({"type": "websocket.send", "text": "echo: " + message["text"]})


def open_page(tls_files: dict[str, str], profile: Path, **server: Any) -> tuple[EchoApp, Any]:
    """Load the page in Chromium, await the socket's echo and close; the app and the result."""
    executable = require_tool("chromium")
    app = EchoApp()
    with run_server(app, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
                    access_log=False, **server) as running, \
            chromium(executable, profile, "--ignore-certificate-errors") as browser:
        page = browser.new_page()
        page.navigate(f"https://localhost:{running.port}/")
        result = page.evaluate("window.echo")
        # The server sees the close after the browser does: wait for it before stopping.
        assert app.closed.wait(10), browser.log
    return app, result


def test_chromium_websocket_over_h2_extended_connect(tls_files: dict[str, str], tmp_path: Path) -> None:
    app, result = open_page(tls_files, tmp_path / "profile")
    assert result == {"echo": "echo: ping from chromium", "code": 1000, "page": "h2"}
    assert len(app.sockets) == 1
    scope = app.sockets[0]
    # RFC 8441 §4: the socket is a CONNECT stream with :protocol websocket on the h2 connection.
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "wss"
    assert scope["path"] == "/ws"
    assert app.close_codes == [1000]


def test_chromium_websocket_over_http1_when_h2_is_off(tls_files: dict[str, str], tmp_path: Path) -> None:
    # Without h2 in ALPN the page and the socket use HTTP/1.1 (RFC 6455 Upgrade): the scope
    # tells the two paths apart.
    app, result = open_page(tls_files, tmp_path / "profile", protocols="h1")
    assert result == {"echo": "echo: ping from chromium", "code": 1000, "page": "http/1.1"}
    assert [scope["http_version"] for scope in app.sockets] == ["1.1"]
    assert app.close_codes == [1000]
