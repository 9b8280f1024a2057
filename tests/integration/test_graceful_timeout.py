"""--timeout-graceful-shutdown expiring: the client of a request still running gets what uvicorn
gives it (500 before the response started, a close after), on h1, h2 and h3."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import h11
import pytest

from tests.helpers import run_server
from tests.integration.process_helpers import roadrunner, write_app
from tests.integration.test_http2_support import RawH2, request_headers
from tests.integration.test_http3_helpers import h3_connect, h3_server_kwargs
from tests.integration.test_http3_limits import H3_NO_ERROR, wait_until
from tests.integration.test_server_features import read_until_closed

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

GRACEFUL = 1  # --timeout-graceful-shutdown for every test here
# Reached: 500 with its whole body. Stalled mid-body: the 5 bytes sent, then a close that an
# HTTP/1.1 client sees as a truncated message (never a complete one).
CANCELLED_BEFORE_START = ("/slow?30", (500, b"Internal Server Error", True))
CANCELLED_MID_RESPONSE = ("/stall", (200, b"start", False))


def client_view(data: bytes) -> tuple[int, bytes, bool]:
    """What an HTTP/1.1 client makes of `data` then a close: status, body, message complete."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.receive_data(data)
    conn.receive_data(b"")
    status, body = 0, b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:  # closed before the message ended
            return status, body, False
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, body, True
        elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return status, body, False


def sigterm_while_running(tmp_path: Path, module: str, path: str, *args: str) -> tuple[object, ...]:
    """GET `path`; SIGTERM the server once the app runs. The client's view, how long the server
    took to close the connection after the SIGTERM, and the server's exit code (it ended)."""
    app = write_app(tmp_path)
    with roadrunner(app, "--timeout-graceful-shutdown", str(GRACEFUL), *args,
                    cwd=tmp_path, module=module) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            server.wait_for("slow-started")
            server.signal(signal.SIGTERM)
            began = time.monotonic()
            data = read_until_closed(sock)  # a socket timeout here: the server never closed
            closed_after = time.monotonic() - began
        code = server.wait()
    return client_view(data), closed_after, code


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize(("path", "expected"), [CANCELLED_BEFORE_START, CANCELLED_MID_RESPONSE])
def test_request_cancelled_at_the_graceful_timeout_is_answered_like_uvicorn(
    tmp_path: Path, http: str, path: str, expected: tuple[int, bytes, bool]
) -> None:
    seen = {
        module: sigterm_while_running(tmp_path, module, path, "--http", http)
        for module in ("uvicorn", "roadrunner")
    }
    for module, (view, closed_after, _) in seen.items():
        assert view == expected, module
        assert closed_after < GRACEFUL + 2, module
    assert seen["roadrunner"][2] == 0  # uvicorn re-raises the SIGTERM once it has shut down


@pytest.mark.parametrize(("path", "status", "body", "reset"), [
    ("/slow?30", 500, b"Internal Server Error", None),
    ("/stall", 200, b"start", 0x2),  # RST_STREAM(INTERNAL_ERROR): never an ended stream
])
@pytest.mark.usefixtures("http2_engine")
def test_h2_stream_cancelled_at_the_graceful_timeout(
    tmp_path: Path, path: str, status: int, body: bytes, reset: int | None
) -> None:
    """HTTP/2 (h2c prior knowledge) shares the HTTP/1.1 outcome: a 500 before the response
    started, a reset stream after; then the connection closes."""
    app = write_app(tmp_path)
    with roadrunner(app, "--protocols", "h1,h2", "--timeout-graceful-shutdown", str(GRACEFUL),
                    cwd=tmp_path) as server, RawH2(server.port, timeout=10) as client:
        client.request(1, request_headers(path.encode()))
        server.wait_for("slow-started")
        server.signal(signal.SIGTERM)
        outcome = client.stream_outcome(1)
        assert (outcome["status"], outcome["body"], outcome["reset"]) == (status, body, reset)
        assert outcome["goaway"] == 0  # the graceful GOAWAY came first
        assert client.read_frame() is None
        assert server.wait() == 0


def test_cancelled_request_is_answered_without_lifespan_too(tmp_path: Path) -> None:
    """Differs on purpose: uvicorn's 500 is sent only if its loop runs again after the cancel
    (lifespan shutdown awaits); with --lifespan off its process ends first and the client sees
    a bare close. roadrunner waits (up to CANCEL_GRACE) for cancelled requests to answer."""
    path, expected = CANCELLED_BEFORE_START
    uvicorn_view = sigterm_while_running(tmp_path, "uvicorn", path, "--lifespan", "off")[0]
    assert uvicorn_view == (0, b"", False)
    roadrunner_view = sigterm_while_running(tmp_path, "roadrunner", path, "--lifespan", "off")[0]
    assert roadrunner_view == expected


def test_h3_stream_cancelled_at_the_graceful_timeout(tls_files: dict[str, str]) -> None:
    """HTTP/3 shares it too: the cancelled stream gets its 500, then CONNECTION_CLOSE."""
    async def stuck(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(30)

    async def main(running: Any) -> None:
        async with h3_connect(running.port, tls_files["cafile"]) as client:
            stream_id = client.start_request("GET", "/")
            await wait_until(lambda: running.server.server_state.tasks)
            running.server.should_exit = True
            response = client.responses[stream_id]
            await asyncio.wait_for(response.done.wait(), GRACEFUL + 5)
            assert (response.status, bytes(response.body)) == (500, b"Internal Server Error")
            await asyncio.wait_for(client.closed_event.wait(), 5)
            assert client.terminated is not None
            assert client.terminated.error_code == H3_NO_ERROR

    kwargs = h3_server_kwargs(tls_files, timeout_graceful_shutdown=GRACEFUL)
    with run_server(stuck, **kwargs) as server:
        asyncio.run(main(server))
