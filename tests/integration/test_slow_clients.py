"""Slow clients on HTTP/1.1 (RFC 9112 §9.5): the request-body and response-send pace guards.

A client trickling a request body gets 408 and a close; a client not reading its response
has its connection reset; a fast client with a slow app (one that reads late, or produces
slowly) is never tripped. Windows are short here so each case runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from typing import Any

import httpx
import pytest

from tests.helpers import capture_logs, read_body, run_server, status_of
from tests.integration.slow_clients_support import WINDOW, pace_limits

pytestmark = pytest.mark.parametrize("http", ["httptools", "h11"])

BODY_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n"


async def echo_length(scope: Any, receive: Any, send: Any) -> None:
    """Read the whole body, answer its length."""
    answer = b"%d" % len(await read_body(receive))
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> bytes:
    """Everything the server sends until it closes (EOF or reset) within `limit` seconds."""
    sock.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the server did not close the connection; it sent {data[:200]!r}") from None
    return data


def trickle(sock: socket.socket, stop: threading.Event, every: float = 0.2) -> None:
    """Send one body byte every `every` seconds until told to stop or the server closes."""
    while not stop.is_set():
        try:
            sock.sendall(b"x")
        except OSError:
            return
        stop.wait(every)


def trickle_body(sock: socket.socket) -> bytes:
    """Send BODY_HEAD, then its body a byte at a time; what the server sends until it closes."""
    sock.sendall(BODY_HEAD)
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(sock, stop))
    sender.start()
    try:
        return read_until_closed(sock)
    finally:
        stop.set()
        sender.join()


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def slow_server(app: Any, http: str, **kwargs: Any) -> Any:
    return run_server(app, http=http, **pace_limits(**kwargs))


# -- request body ----------------------------------------------------------------------------------


def test_slow_body_gets_408_and_close(http: str) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break

    with slow_server(app, http) as server, capture_logs("roadrunner.error") as logs:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            started = time.monotonic()
            data = trickle_body(sock)
            elapsed = time.monotonic() - started
        assert status_of(data) == 408
        assert b"connection: close" in data.lower()
        assert WINDOW <= elapsed < WINDOW + 2.5
        assert wait_for(lambda: "http.disconnect" in seen, 2)
        assert "Request body read too slow" in logs.text
        assert wait_for(lambda: not server.server.server_state.connections, 3)


def test_body_at_the_minimum_rate_is_served(http: str) -> None:
    # 40 bytes every 0.1 s is 400 bytes/s, twice the minimum, for 2.5 s: several windows.
    with slow_server(echo_length, http) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")
            for _ in range(25):
                sock.sendall(b"y" * 40)
                time.sleep(0.1)
            data = read_until_closed(sock)
    assert status_of(data) == 200 and data.endswith(b"1000")


def test_slow_body_after_the_response_started_closes(http: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
        try:
            await read_body(receive)
            await send({"type": "http.response.body", "body": b"never"})
        except OSError:
            pass

    with slow_server(app, http) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            data = trickle_body(sock)
    assert status_of(data) == 200 and b"started" in data and b"never" not in data
    assert not data.endswith(b"0\r\n\r\n")  # cut short: no last chunk


def test_body_guard_off_with_zero_timeout(http: str) -> None:
    with slow_server(echo_length, http, timeout_request_body=0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n")
            for _ in range(8):
                sock.sendall(b"z")
                time.sleep(0.2)
            data = read_until_closed(sock)
    assert status_of(data) == 200 and data.endswith(b"8")


def test_slow_app_reading_late_is_not_a_slow_client(http: str) -> None:
    # The app sleeps past two windows before it reads a 1 MB body: the client, held back by
    # backpressure meanwhile, is not to blame.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(WINDOW * 2.5)
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
            await asyncio.sleep(0.05)  # and reads slowly too
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % len(body)})

    with slow_server(app, http) as server:
        response = httpx.post(server.url + "/", content=b"b" * (1024 * 1024), timeout=10)
    assert response.status_code == 200 and response.text == str(1024 * 1024)


# -- response send ---------------------------------------------------------------------------------


def small_window_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def test_slow_reader_of_a_streamed_response_is_reset(http: str) -> None:
    outcome: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"s" * 65536
        try:
            for _ in range(256):  # 16 MB: far more than the socket buffers hold
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            outcome.append("complete")
        except OSError:
            outcome.append("disconnected")

    with slow_server(app, http) as server, capture_logs("roadrunner.error") as logs:
        with small_window_socket(server.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            assert wait_for(lambda: outcome, WINDOW + 3)
            elapsed = time.monotonic() - started
            received = len(read_until_closed(sock))
        assert outcome == ["disconnected"]
        assert WINDOW <= elapsed < WINDOW + 3
        assert received < 16 * 65536
        assert "Response send too slow" in logs.text
        assert wait_for(lambda: not server.server.server_state.connections, 3)


def test_slow_reader_of_a_whole_response_is_reset(http: str) -> None:
    # One body message, no drain: the app is done at once; the bytes wait in the transport.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"w" * (8 * 1024 * 1024)})

    with slow_server(app, http) as server:
        with small_window_socket(server.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            assert len(server.server.server_state.connections) == 1
            assert wait_for(lambda: not server.server.server_state.connections, WINDOW + 3)
            received = len(read_until_closed(sock))
    assert received < 8 * 1024 * 1024


def steady_reader(port: int, seconds: float) -> tuple[int, bool]:
    """Read 16 KiB every 20 ms (about 800 KB/s) for `seconds`: (bytes read, closed by the server).

    On loopback the client's window opens in steps of one MSS (64 KiB): fast enough that each
    test window sees several.
    """
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(1)
        deadline = time.monotonic() + seconds
        taken = 0
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(16384)
            except (ConnectionResetError, TimeoutError):
                return taken, True
            if not chunk:
                return taken, True
            taken += len(chunk)
            time.sleep(0.02)
        return taken, False


async def large_response(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"t" * (32 * 1024 * 1024)})


def test_reader_below_the_minimum_rate_is_reset(http: str) -> None:
    # The client keeps taking bytes, but at about 800 KB/s against a 10 MB/s minimum.
    with slow_server(large_response, http, min_send_rate=10_000_000) as server:
        taken, closed = steady_reader(server.port, WINDOW + 3)
        assert closed and 0 < taken < 32 * 1024 * 1024
        assert wait_for(lambda: not server.server.server_state.connections, 1)


def test_reader_above_the_minimum_rate_is_served(http: str) -> None:
    # The same reader against the 200 bytes/s of these tests: three windows, still open.
    with slow_server(large_response, http) as server:
        taken, closed = steady_reader(server.port, WINDOW * 4)
    assert not closed and taken > 0


def test_idle_close_with_unread_response_is_reset(http: str) -> None:
    # A response small enough not to pause writing: the bytes wait in the transport when the
    # keep-alive timer closes the connection; the close would otherwise wait for ever.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"k" * 60000})

    with slow_server(app, http, timeout_keep_alive=0.2) as server:
        with small_window_socket(server.port) as sock:
            assert wait_for(lambda: server.server.server_state.connections, 2)
            (connection,) = server.server.server_state.connections
            # Small kernel buffers on the server side too, so the response stays in the transport.
            connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.1)
            assert connection.transport.get_write_buffer_size() > 0 and not connection.write_paused
            assert wait_for(lambda: not server.server.server_state.connections, WINDOW + 3.5)


def test_slow_app_streaming_to_a_fast_client_is_not_tripped(http: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(10):  # 2.5 s, about four windows, of a few bytes every 0.25 s
            await send({"type": "http.response.body", "body": b"%d," % index, "more_body": True})
            await asyncio.sleep(0.25)
        await send({"type": "http.response.body", "body": b"end"})

    with slow_server(app, http) as server:
        response = httpx.get(server.url + "/", timeout=10)
    assert response.text == "0,1,2,3,4,5,6,7,8,9,end"


def test_fast_reader_of_a_large_response_is_not_tripped(http: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(64):
            await send({"type": "http.response.body", "body": b"f" * 262144, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with slow_server(app, http) as server:
        total = 0
        with httpx.stream("GET", server.url + "/", timeout=10) as response:
            for chunk in response.iter_bytes():
                total += len(chunk)
                time.sleep(0.0005)  # a reader slower than memory, far above the minimum rate
    assert total == 64 * 262144


def test_send_guard_off_with_zero_timeout(http: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"o" * (4 * 1024 * 1024)})

    with slow_server(app, http, timeout_send=0) as server:
        with small_window_socket(server.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            time.sleep(WINDOW * 3)
            assert len(server.server.server_state.connections) == 1
            received = len(read_until_closed(sock, limit=10))
    assert received > 4 * 1024 * 1024


def test_slow_reader_over_tls_is_reset(http: str, tls_files: dict[str, str]) -> None:
    # Over TLS the transport's buffer holds records and plaintext; the rule is the same.
    outcome: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(256):
                await send({"type": "http.response.body", "body": b"e" * 65536, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            outcome.append("complete")
        except OSError:
            outcome.append("disconnected")

    context = ssl.create_default_context(cafile=tls_files["cafile"])
    with slow_server(
        app, http, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"]
    ) as server, small_window_socket(server.port) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wait_for(lambda: outcome, WINDOW + 3)
            assert outcome == ["disconnected"]
            assert wait_for(lambda: not server.server.server_state.connections, 2)
