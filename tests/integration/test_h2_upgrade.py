"""The h2c Upgrade (RFC 7540 §3.2) where it meets HTTP/1.1 rules: pipelining, load shedding,
and stream 1's state afterwards. Every test runs on both HTTP/2 engines (http2_engine)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest
from hyperframe.frame import RstStreamFrame, SettingsFrame

from tests.helpers import run_server
from tests.integration.test_h2_conformance import DATA, STREAM_CLOSED, frame
from tests.integration.test_http2_support import PREFACE, RawH2, request_headers

pytestmark = pytest.mark.usefixtures("http2_engine")

UPGRADE_FIELDS = (
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
)


async def path_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the HTTP version and the path."""
    body = b"%s %s" % (scope["http_version"].encode(), scope["path"].encode())
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def read_until_closed(sock: socket.socket, marker: bytes = b"") -> bytes:
    """What the server sends until it closes (or, with `marker`, until the marker arrives)."""
    data = b""
    while not marker or marker not in data:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_h2c_upgrade_pipelined_behind_a_request_is_served_as_http11_in_order(http: str) -> None:
    # RFC 9112 §9.3.2: pipelined requests are answered in order, so the Upgrade of a request
    # queued behind an unanswered one is ignored (RFC 9113 §3.2 lets a server ignore it).
    with run_server(path_app, protocols="h1,h2", http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            sock.sendall(
                b"GET /aa HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /bb HTTP/1.1\r\nHost: x\r\n" + UPGRADE_FIELDS + b"\r\n"
            )
            data = read_until_closed(sock, b"1.1 /bb")
            assert b" 101 " not in data
            first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
            assert first.endswith(b"\r\n\r\n1.1 /aa")
            assert second.endswith(b"\r\n\r\n1.1 /bb")
            assert b"connection: close" not in first
            if http == "httptools":
                # llhttp parses nothing after an Upgrade request: the connection ends after it.
                assert b"connection: close" in second
                assert read_until_closed(sock) == b""
            else:
                # The connection is still HTTP/1.1 and keeps serving.
                sock.sendall(b"GET /cc HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_until_closed(sock, b"1.1 /cc").startswith(b"HTTP/1.1 200 OK\r\n")


def test_h2c_upgrade_obeys_limit_concurrency() -> None:
    # The limit counts open connections as uvicorn does: with one other connection open, a
    # second one is over --limit-concurrency 2 and its request gets a 503 over HTTP/1.1,
    # Upgrade or not.
    upgrade = b"GET /up HTTP/1.1\r\nHost: x\r\n" + UPGRADE_FIELDS + b"\r\n"
    with run_server(path_app, protocols="h1,h2", limit_concurrency=2) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            sock.sendall(upgrade)
            alone = read_until_closed(sock, b"\r\n\r\n")
            assert alone.startswith(b"HTTP/1.1 101 ")  # under the limit: upgraded
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as other:
            other.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_until_closed(other, b"1.1 /held").startswith(b"HTTP/1.1 200 ")
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
                sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_until_closed(sock).startswith(b"HTTP/1.1 503 ")
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
                sock.sendall(upgrade)
                answer = read_until_closed(sock)
                assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
                assert b"connection: close" in answer.lower()


def test_data_on_upgraded_stream_1_is_stream_closed() -> None:
    # RFC 7540 §3.2: after the upgrade, stream 1 is half-closed (remote); RFC 9113 §5.1: DATA
    # on it is a stream error of type STREAM_CLOSED, and the connection serves on.
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/up":
            while not gate.is_set():  # stream 1 stays half-closed (remote) meanwhile
                await asyncio.sleep(0.01)
        await path_app(scope, receive, send)

    with run_server(app, protocols="h1,h2") as server:
        client = RawH2(server.port, preface=False)
        with client:
            client.send_raw(b"GET /up HTTP/1.1\r\nHost: x\r\n" + UPGRADE_FIELDS + b"\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.sock.recv(1)
                assert chunk, "closed before the 101"
                head += chunk
            assert head.startswith(b"HTTP/1.1 101 ")
            client.send_raw(PREFACE + SettingsFrame(0).serialize() + frame(DATA, 0, 1, b"late"))
            reset = client.wait_for(RstStreamFrame, 1)
            assert isinstance(reset, RstStreamFrame) and reset.error_code == STREAM_CLOSED
            client.request(3, request_headers(b"/next"))
            outcome = client.stream_outcome(3)
            assert (outcome.get("status"), outcome["body"], outcome["goaway"]) == (200, b"2 /next", None)
            assert client.is_alive()
            gate.set()


def test_h2c_upgrade_with_settings_that_are_no_settings_frame_stays_http11() -> None:
    # RFC 9113 §6.5: a SETTINGS payload is a multiple of 6 octets; these 5 decode as base64
    # but are no SETTINGS body: the Upgrade is ignored (RFC 7540 §3.2), on either engine.
    with run_server(path_app, protocols="h1,h2") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            sock.sendall(
                b"GET /odd HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                b"Upgrade: h2c\r\nHTTP2-Settings: AAAAAAA\r\n\r\n"
            )
            answer = read_until_closed(sock, b"1.1 /odd")
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
