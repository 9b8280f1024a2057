"""What an idle keep-alive connection holds after its request (bench: idle_connections*).

The figure itself is a bench measurement (bench/idle.py, docs/bench/notes.md); these tests pin
the pieces of it that are structure, not size: what is released or shared once a request ends.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from roadrunner.protocols.http2.connection import Http2Connection
from roadrunner.protocols.http2.engine import engine_name
from tests.helpers import run_server
from tests.integration.test_http2_support import RawH2

SCOPES: list[dict[str, Any]] = []


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    SCOPES.append(scope)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def keep_alive_request(sock: socket.socket) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Big: " + b"v" * 200 + b"\r\n\r\n")
    data = b""
    while not data.endswith(b"0\r\n\r\n"):  # the chunked body's last chunk
        chunk = sock.recv(65536)
        assert chunk
        data += chunk


def test_an_idle_h1_connection_keeps_no_request_head() -> None:
    with run_server(hello, http="httptools") as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            keep_alive_request(sock)
            (connection,) = server.server.server_state.connections
            assert connection.headers == [] and connection.url == b""


@pytest.mark.parametrize("protocols", ["h1", "h2"])
def test_connections_share_the_server_address_and_host_objects(protocols: str) -> None:
    SCOPES.clear()
    with run_server(hello, protocols=protocols) as server:
        if protocols == "h1":
            for _ in range(2):
                with httpx.Client() as client:  # one connection each
                    assert client.get(f"http://127.0.0.1:{server.port}/").text == "hello"
        else:
            for _ in range(2):
                with RawH2(server.port) as h2c:
                    h2c.request(1)
                    assert h2c.stream_outcome(1)["body"] == b"hello"
    first, second = SCOPES
    assert first["client"] != second["client"]  # two connections
    assert first["server"] is second["server"]
    assert first["client"][0] is second["client"][0]
    # scope["asgi"] stays one dict per connection: an app that changes it changes no other's.
    assert first["asgi"] == second["asgi"] and first["asgi"] is not second["asgi"]


def test_an_http2_connection_has_no_instance_dict(http2_engine: str) -> None:
    with run_server(hello, protocols="h2") as server:
        with RawH2(server.port) as h2c:
            h2c.request(1)
            assert h2c.stream_outcome(1)["body"] == b"hello"
            (connection,) = server.server.server_state.connections
            assert isinstance(connection, Http2Connection)
            assert not hasattr(connection, "__dict__")
            if engine_name(connection.config) == "nghttp2":
                # The output buffer is freed once the response is out (it was 64 KiB, held).
                assert connection.h2.output_capacity == 0
