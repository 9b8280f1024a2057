"""Load shedding on HTTP/1.1: the soft threshold (503 + Retry-After) and the hard limit.

Requests are held in flight without sleeps: the app starts its response, then waits for the
request body, which the test sends only when it wants the request to finish.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from roadrunner.cli import main
from roadrunner.config import Config, ConfigError
from tests.helpers import raw_request, read_body, run_server, status_of

GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
HELD = b"POST /held HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"


async def holding_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Plain requests answer at once; POST /held stays in flight until its body arrives;
    a WebSocket is accepted and closed."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"] != "/held":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"started", "more_body": True})
    body = await read_body(receive)
    await send({"type": "http.response.body", "body": b" done:" + body})


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {marker!r}: {data!r}"
        data += chunk
    return data


@contextlib.contextmanager
def held_requests(port: int, count: int) -> Iterator[list[socket.socket]]:
    """count requests in flight on their own connections; finished (and checked) on exit."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sockets.append(sock)
            sock.sendall(HELD)
            read_until(sock, b"started")  # the app is running this request now
        yield sockets
        for sock in sockets:
            sock.sendall(b"body")
            assert b"done:body" in read_until(sock, b"0\r\n\r\n")
    finally:
        for sock in sockets:
            sock.close()


def header_value(response: bytes, name: bytes) -> bytes | None:
    head = response.partition(b"\r\n\r\n")[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_soft_threshold_sheds_with_retry_after(http: str) -> None:
    with run_server(holding_app, http=http, limit_concurrency_soft=2, retry_after=7) as server:
        assert status_of(raw_request(server.port, GET)) == 200  # under the threshold
        with held_requests(server.port, 2):
            response = raw_request(server.port, GET)
            assert status_of(response) == 503
            assert header_value(response, b"retry-after") == b"7"
            assert header_value(response, b"connection") == b"close"
            assert response.endswith(b"Service Unavailable")
            head = raw_request(server.port, GET.replace(b"GET", b"HEAD"))
            assert status_of(head) == 503 and head.endswith(b"\r\n\r\n")  # no body to HEAD
        # Load gone: served again.
        assert status_of(raw_request(server.port, GET)) == 200


WS_HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_websocket_handshake_is_shed_too() -> None:
    """A new WebSocket past the soft threshold gets the same 503 + Retry-After, not a 101."""
    with run_server(holding_app, limit_concurrency_soft=1, retry_after=3) as server:
        with held_requests(server.port, 1):
            response = raw_request(server.port, WS_HANDSHAKE)
            assert status_of(response) == 503
            assert header_value(response, b"retry-after") == b"3"
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(WS_HANDSHAKE)
            assert status_of(read_until(sock, b"\r\n\r\n")) == 101  # load gone: upgraded


def test_shed_503_survives_a_large_unread_upload() -> None:
    """The 503 goes out before the body is read; lingering close keeps it from being reset."""
    body = b"x" * (4 * 1024 * 1024)
    with run_server(holding_app, limit_concurrency_soft=0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
            sock.sendall(body)
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert status_of(response) == 503
        assert response.endswith(b"Service Unavailable")


def test_soft_threshold_comes_before_the_hard_limit() -> None:
    with run_server(holding_app, limit_concurrency_soft=1, limit_concurrency=10) as server:
        with held_requests(server.port, 1):
            response = raw_request(server.port, GET)
            assert status_of(response) == 503
            assert header_value(response, b"retry-after") == b"1"  # the default


def test_soft_threshold_zero_sheds_everything() -> None:
    with run_server(holding_app, limit_concurrency_soft=0) as server:
        assert status_of(raw_request(server.port, GET)) == 503


def test_hard_limit_counts_in_flight_requests() -> None:
    """As uvicorn: N counts this request's connection too, so N allows N-1 at once, and the
    503 carries no Retry-After (that is --limit-concurrency-soft's)."""
    with run_server(holding_app, limit_concurrency=3) as server:
        with held_requests(server.port, 2):
            response = raw_request(server.port, GET)
            assert status_of(response) == 503
            assert header_value(response, b"retry-after") is None
        assert status_of(raw_request(server.port, GET)) == 200


def test_hard_limit_counts_open_connections() -> None:
    with run_server(holding_app, limit_concurrency=3) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
            # One idle keep-alive connection plus this one: under the limit, served.
            assert status_of(raw_request(server.port, GET)) == 200
            with socket.create_connection(("127.0.0.1", server.port), timeout=5):
                # Three connections open: at the limit, refused though no request is running.
                response = raw_request(server.port, GET)
                assert status_of(response) == 503
                assert header_value(response, b"retry-after") is None
            # Back to two connections: served.
            idle.sendall(GET)
            assert status_of(read_until(idle, b"\r\n\r\n")) == 200


def test_keep_alive_connection_shed_then_closed() -> None:
    with run_server(holding_app, limit_concurrency_soft=1) as server:
        with held_requests(server.port, 1):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(GET.replace(b"Connection: close\r\n", b""))
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        assert status_of(data) == 503
        assert data.count(b"HTTP/1.1") == 1  # the server closed after the 503


def test_retry_after_is_validated_and_a_cli_flag() -> None:
    with pytest.raises(ConfigError, match="retry-after"):
        Config("tests.helpers:run_server", retry_after=-1)
    result = CliRunner().invoke(main, ["x:app", "--retry-after", "-3"])
    assert result.exit_code == 2 and "--retry-after" in result.output
    assert "--retry-after" in CliRunner().invoke(main, ["--help"]).output


def test_cli_flags_reach_the_server() -> None:
    """`roadrunner --limit-concurrency-soft 0 --retry-after 5 --proxy-protocol v1` end to end."""
    import re
    import subprocess
    import sys

    command = [
        sys.executable, "-m", "roadrunner", "tests.integration.test_load_shedding:holding_app",
        "--port", "0", "--lifespan", "off", "--limit-concurrency-soft", "0",
        "--retry-after", "5", "--proxy-protocol", "v1",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        port = None
        for line in process.stderr:
            match = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port is not None, "the server did not start"
        response = raw_request(port, b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n" + GET)
        assert status_of(response) == 503
        assert header_value(response, b"retry-after") == b"5"
        assert raw_request(port, GET) == b""  # no PROXY header: closed, not parsed as HTTP
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
