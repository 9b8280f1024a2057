"""WebSocket over HTTP/1.1 against a real server: the websockets client, and raw sockets for
what a well-behaved client never sends (RFC 6455 violations, bad handshakes, dead peers)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from roadrunner.asgi.websocket_stream import WebSocketStream
from roadrunner.protocols.websocket import H1WebSocketConnection
from tests.helpers import raw_request, run_server, status_of, websocket_echo

PARSERS = ["httptools", "h11"]


echo_app = websocket_echo


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until predicate() is truthy (a condition in another thread, not a fixed delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("condition not reached")


def ws_connections(server: Any) -> list[H1WebSocketConnection]:
    return [c for c in server.server.server_state.connections if isinstance(c, H1WebSocketConnection)]


# -- raw client ----------------------------------------------------------------------------------


def handshake(key: bytes | None = None, extra: bytes = b"", version: bytes = b"13") -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16))
    return (
        b"GET /chat?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + (b"Sec-WebSocket-Key: " + key + b"\r\n" if key else b"")
        + b"Sec-WebSocket-Version: " + version + b"\r\n" + extra + b"\r\n"
    )


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    """One client frame, built by hand so it can break the rules on purpose."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A WebSocket client on a plain socket that reads server frames one by one."""

    def __init__(self, port: int, request: bytes | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""
        self.sock.sendall(request if request is not None else handshake())
        head = self.read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.head = head

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = self.read_exactly(2)
        assert b1 & 0x80 == 0, "server frames are never masked"
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.read_exactly(8))
        return b0 & 0x0F, self.read_exactly(length)

    def read_close(self) -> int:
        """Skip data and pings until a Close frame; return its status code."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if payload else 1005

    def at_eof(self) -> bool:
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


# -- handshake and scope ----------------------------------------------------------------------


@pytest.mark.parametrize("http", PARSERS)
def test_echo_text_and_bytes_and_scope(http: str) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await echo_app(scope, receive, send)

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/chat%20room?q=1", subprotocols=["a", "b"]) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff" * 40000)
            assert await ws.recv() == b"\x00\xff" * 40000

    with run_server(app, http=http) as server:
        run(client(server.port))
    scope = scopes[0]
    assert scope["type"] == "websocket"
    assert scope["asgi"]["spec_version"] == "2.5"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat room"
    assert scope["raw_path"] == b"/chat%20room"
    assert scope["query_string"] == b"q=1"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", server.port)
    assert "websocket.http.response" in scope["extensions"]
    assert "method" not in scope
    assert (b"upgrade", b"websocket") in scope["headers"]


def test_wss_over_tls(tls_files: dict[str, str], client_ssl_context: ssl.SSLContext) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await echo_app(scope, receive, send)

    async def client(port: int) -> None:
        async with connect(f"wss://127.0.0.1:{port}/", ssl=client_ssl_context) as ws:
            await ws.send("secure")
            assert await ws.recv() == "secure"

    with run_server(app, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
                    protocols="h1") as server:
        run(client(server.port))
    assert scopes[0]["scheme"] == "wss"


def test_accept_with_subprotocol_and_headers() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "b",
                    "headers": [(b"x-custom", b"1"), (b"sec-websocket-accept", b"forged")]})
        await send({"type": "websocket.close"})

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/", subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"
            assert ws.response.headers["x-custom"] == "1"
            assert ws.response.headers["server"] == "roadrunner"
            with pytest.raises(ConnectionClosed):
                await ws.recv()

    with run_server(app) as server:
        run(client(server.port))


def test_unoffered_subprotocol_is_an_app_error() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "nope"})

    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/"):
                pass
        assert info.value.response.status_code == 500

    with run_server(app) as server:
        run(client(server.port))


@pytest.mark.parametrize("http", PARSERS)
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (handshake(key=b""), 400),
        (handshake(key=b"dG9vIHNob3J0"), 400),  # "too short": not 16 bytes
        (handshake(key=b"not base64!!"), 400),
        (handshake(version=b"8"), 426),
    ],
)
def test_bad_handshake(http: str, request_bytes: bytes, status: int) -> None:
    with run_server(echo_app, http=http) as server:
        response = raw_request(server.port, request_bytes)
        assert status_of(response) == status
        if status == 426:
            assert b"sec-websocket-version: 13\r\n" in response.lower()
        # The server keeps serving others.
        other = RawClient(server.port)
        assert other.status == 101
        other.close()


def test_ws_none_serves_upgrade_as_http() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    with run_server(app, ws="none") as server:
        response = raw_request(server.port, handshake())
    assert status_of(response) == 200
    assert b"\r\nplain\r\n" in response


@pytest.mark.parametrize("name", ["websockets", "websockets-sansio", "wsproto"])
def test_uvicorn_ws_names_map_to_wsproto(name: str) -> None:
    with run_server(echo_app, ws=name) as server:
        client = RawClient(server.port)
        assert client.status == 101
        client.close()


def test_non_get_upgrade_is_plain_http() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app) as server:
        response = raw_request(server.port, handshake().replace(b"GET", b"DELETE", 1)
                               .replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert status_of(response) == 204


@pytest.mark.parametrize("http", PARSERS)
def test_frames_sent_with_the_handshake_belong_to_the_websocket(http: str) -> None:
    with run_server(echo_app, http=http) as server:
        client = RawClient(server.port, handshake() + frame(0x1, b"early"))
        assert client.status == 101
        assert client.read_frame() == (0x1, b"early")
        client.close()


# -- rejecting the handshake ----------------------------------------------------------------------


def test_close_before_accept_is_403() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/"):
                pass
        assert info.value.response.status_code == 403

    with run_server(app) as server:
        run(client(server.port))


@pytest.mark.parametrize("content_length", [True, False])
def test_denial_response_extension(content_length: bool) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"text/plain"), (b"x-reason", b"auth")]
        if content_length:
            headers.append((b"content-length", b"12"))
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"go ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"away, you"})

    async def client(port: int) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/"):
                pass
        response = info.value.response
        assert response.status_code == 401
        assert response.headers["x-reason"] == "auth"
        assert response.body == b"go away, you"

    with run_server(app) as server:
        run(client(server.port))


@pytest.mark.parametrize("returns", [True, False])
def test_app_failing_before_accept_is_500(returns: bool) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if not returns:
            raise ValueError("boom")

    with run_server(app) as server:
        assert status_of(raw_request(server.port, handshake())) == 500


def test_bad_messages_before_accept_are_app_errors() -> None:
    errors: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        for message in ({"type": "websocket.send", "text": "x"},
                        {"type": "websocket.http.response.start", "status": 99}):
            try:
                await send(message)
            except RuntimeError as exc:
                errors.append(exc)
        await send({"type": "websocket.http.response.start", "status": 400, "headers": []})
        try:
            await send({"type": "websocket.accept"})
        except RuntimeError as exc:
            errors.append(exc)
        await send({"type": "websocket.http.response.body", "body": b""})

    with run_server(app) as server:
        assert status_of(raw_request(server.port, handshake())) == 400
    assert len(errors) == 3


# -- closing -------------------------------------------------------------------------------------


def test_app_close_with_code_and_reason_and_send_after_close_raises() -> None:
    errors: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        try:
            await send({"type": "websocket.send", "text": "late"})
        except RuntimeError as exc:
            errors.append(exc)
        await send({"type": "websocket.close"})  # a second close is harmless
        message = await receive()
        assert message["type"] == "websocket.disconnect"

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4000
            assert ws.close_reason == "bye"

    with run_server(app) as server:
        run(client(server.port))
    assert len(errors) == 1


def test_client_close_reaches_app_and_send_after_raises_oserror() -> None:
    seen: list[Any] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())
        seen.append(await receive())  # still a disconnect
        try:
            await send({"type": "websocket.send", "bytes": b"late"})
        except OSError as exc:
            seen.append(exc)
        await send({"type": "websocket.close"})  # closing a closed socket is a no-op
        done.set()

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.close(code=4001, reason="done")

    with run_server(app) as server:
        run(client(server.port))
        assert done.wait(5)
    assert seen[0] == {"type": "websocket.disconnect", "code": 4001, "reason": "done"}
    assert seen[1]["type"] == "websocket.disconnect"
    assert isinstance(seen[2], OSError)


def test_app_returning_after_accept_closes_1000_and_exception_closes_1011() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/fail":
            raise ValueError("boom")

    async def client(port: int) -> None:
        for path, code in (("/ok", 1000), ("/fail", 1011)):
            async with connect(f"ws://127.0.0.1:{port}{path}") as ws:
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == code

    with run_server(app) as server:
        run(client(server.port))


def test_invalid_app_messages_after_accept() -> None:
    errors: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for message in ({"type": "websocket.send", "text": "a", "bytes": b"b"},
                        {"type": "websocket.send"},
                        {"type": "websocket.accept"},
                        {"type": "websocket.close", "code": "x"}):
            try:
                await send(message)
            except RuntimeError as exc:
                errors.append(exc)
        await send({"type": "websocket.close"})

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1000

    with run_server(app) as server:
        run(client(server.port))
    assert len(errors) == 4


def test_close_handshake_timeout_drops_a_silent_peer() -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1001})
        disconnects.append(await receive())

    with run_server(app, ws_close_timeout=0.2) as server:
        client = RawClient(server.port)
        assert client.read_close() == 1001
        # The client never answers the Close: the server gives up and drops the connection.
        assert client.at_eof()
        wait_for(lambda: disconnects)
    assert disconnects[0]["code"] == 1006


def test_server_shutdown_closes_with_1012() -> None:
    async def client(port: int, server: Any) -> None:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            server.server.should_exit = True
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1012

    with run_server(echo_app) as server:
        run(client(server.port, server))


# -- protocol rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, b"unmasked", mask=False), 1002),  # RFC 6455 §5.1: clients must mask
        (frame(0x1, b"x", rsv=0x4), 1002),  # RSV1 without an extension
        (frame(0x3, b"x"), 1002),  # reserved opcode
        (frame(0x9, b"x" * 126), 1002),  # control frame over 125 bytes
        (frame(0x9, b"x", fin=False), 1002),  # fragmented control frame
        (frame(0x0, b"x"), 1002),  # continuation without a message
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),  # new message inside another
        (frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), 1007),  # bad UTF-8
        (frame(0x1, b"\xce", fin=False) + frame(0x0, b"\xff"), 1007),  # bad UTF-8 across fragments
        (frame(0x8, b"\x03\xe8\xff"), 1007),  # close reason not UTF-8
        (frame(0x8, b"\x00"), 1002),  # 1-byte close payload
    ],
    ids=["unmasked", "rsv1", "opcode", "long-control", "fragmented-control", "continuation",
         "nested-message", "utf8", "utf8-fragments", "utf8-close-reason", "short-close"],
)
def test_protocol_violations_fail_the_connection(data: bytes, code: int) -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        disconnects.append(await receive())

    with run_server(app) as server:
        client = RawClient(server.port)
        client.send(data)
        assert client.read_close() == code
        assert client.at_eof()
        wait_for(lambda: disconnects)
        # The server keeps serving everyone else.
        other = RawClient(server.port)
        assert other.status == 101
        other.close()
    assert disconnects[0]["code"] == code


def test_messages_before_a_violation_are_answered_first() -> None:
    with run_server(echo_app) as server:
        client = RawClient(server.port)
        client.send(frame(0x1, b"first") + frame(0x1, b"x", rsv=0x2))
        assert client.read_frame() == (0x1, b"first")
        assert client.read_close() == 1002


@pytest.mark.parametrize(
    "first",
    [frame(0x1, b"f" * 50, fin=False) + frame(0x0, b"g" * 50),  # assembled by wsproto
     frame(0x1, b"f" * 50 + b"g" * 50)],  # one frame: the fast path takes it
    ids=["fragmented", "single-frame"],
)
@pytest.mark.parametrize(
    "stray",
    [frame(0x0, b"z" * 100),  # FIN, all of it
     bytes((0x00, 0xFF)) + struct.pack("!Q", 1 << 55) + bytes(4) + b"z" * 100],  # 2**55 declared
    ids=["complete", "64-bit-length"],
)
def test_continuation_after_a_finished_message_is_1002(first: bytes, stray: bytes) -> None:
    # RFC 6455 §5.4: a continuation with no message in progress is a protocol error (1002),
    # not a message too big (1009): the finished message's 100 bytes are not its size, and
    # the code does not depend on which path read that message.
    with run_server(echo_app, ws_max_size=125) as server:
        client = RawClient(server.port)
        client.send(first)
        assert client.read_frame() == (0x1, b"f" * 50 + b"g" * 50)
        client.send(stray)
        assert client.read_close() == 1002
        assert client.at_eof()


def test_fragments_and_interleaved_ping_are_reassembled() -> None:
    with run_server(echo_app) as server:
        client = RawClient(server.port)
        client.send(frame(0x1, b"frag", fin=False) + frame(0x9, b"ping!")
                    + frame(0x0, "mént".encode()[:2], fin=False) + frame(0x0, "mént".encode()[2:]))
        assert client.read_frame() == (0xA, b"ping!")  # RFC 6455 §5.5.3: pong echoes the payload
        assert client.read_frame() == (0x1, "fragmént".encode())
        client.send(frame(0x8, struct.pack("!H", 1000)))
        assert client.read_close() == 1000
        assert client.at_eof()


def test_message_too_big_closes_1009() -> None:
    async def client(port: int, compression: str | None) -> None:
        async with connect(f"ws://127.0.0.1:{port}/", compression=compression) as ws:
            await ws.send(b"x" * 1000)
            assert await ws.recv() == b"x" * 1000
            await ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1009

    with run_server(echo_app, ws_max_size=1000) as server:
        run(client(server.port, None))
        run(client(server.port, "deflate"))


def test_deflate_bomb_is_stopped_after_decompression() -> None:
    """A message far below the limit on the wire but far above it inflated: close 1009."""
    with run_server(echo_app, ws_max_size=1 << 20) as server:
        client = RawClient(server.port, handshake(extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n"))
        assert b"permessage-deflate" in client.head.lower()
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = compressor.compress(b"\x00" * (16 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        bomb = bomb[:-4]
        assert len(bomb) < 1 << 20
        client.send(frame(0x2, bomb, rsv=0x4))
        assert client.read_close() == 1009


# -- permessage-deflate negotiation (RFC 7692) --------------------------------------------------------


def test_deflate_parameters_are_negotiated() -> None:
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True,
        server_max_window_bits=10, client_max_window_bits=9,
    )

    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/", extensions=[factory], compression=None) as ws:
            header = ws.response.headers["sec-websocket-extensions"]
            for part in ("server_no_context_takeover", "client_no_context_takeover",
                         "server_max_window_bits=10", "client_max_window_bits=9"):
                assert part in header
            for i in range(3):
                await ws.send("compressible " * 200 + str(i))
                assert await ws.recv() == "compressible " * 200 + str(i)

    with run_server(echo_app) as server:
        run(client(server.port))


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        (b"permessage-deflate", b"sec-websocket-extensions: permessage-deflate\r\n"),
        (b"permessage-deflate; server_max_window_bits=8, permessage-deflate",
         b"sec-websocket-extensions: permessage-deflate\r\n"),
        (b"permessage-deflate; client_max_window_bits",
         b"sec-websocket-extensions: permessage-deflate\r\n"),
        (b"permessage-deflate; client_max_window_bits=8",
         b"sec-websocket-extensions: permessage-deflate; client_max_window_bits=8\r\n"),
        (b"permessage-deflate; unknown=1", None),
        (b"permessage-deflate; server_max_window_bits=16", None),
        (b"permessage-deflate; client_max_window_bits=x", None),
        (b"permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        (b"x-webkit-deflate-frame", None),
    ],
)
def test_deflate_offers(offer: bytes, expected: bytes | None) -> None:
    with run_server(echo_app) as server:
        client = RawClient(server.port, handshake(extra=b"Sec-WebSocket-Extensions: " + offer + b"\r\n"))
        head = client.head.lower() + b"\r\n"
        if expected is None:
            assert b"sec-websocket-extensions" not in head
        else:
            assert expected in head
        client.close()


def test_per_message_deflate_off() -> None:
    async def client(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            assert "sec-websocket-extensions" not in ws.response.headers
            await ws.send("plain")
            assert await ws.recv() == "plain"

    with run_server(echo_app, ws_per_message_deflate=False) as server:
        run(client(server.port))


# -- keepalive ----------------------------------------------------------------------------------------


def test_pings_continue_while_the_peer_answers() -> None:
    with run_server(echo_app, ws_ping_interval=0.05, ws_ping_timeout=5) as server:
        client = RawClient(server.port)
        for _ in range(2):
            opcode, payload = client.read_frame()
            assert opcode == 0x9
            client.send(frame(0xA, payload))
        assert client.read_frame()[0] == 0x9  # a third ping: the cycle goes on
        client.close()


def test_dead_peer_is_closed_after_ping_timeout() -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        disconnects.append(await receive())

    with run_server(app, ws_ping_interval=0.05, ws_ping_timeout=0.1) as server:
        client = RawClient(server.port)
        assert client.read_frame()[0] == 0x9  # never answered
        assert client.read_close() == 1011
        assert client.at_eof()
        wait_for(lambda: disconnects)
    assert disconnects[0]["code"] == 1006


# -- backpressure -------------------------------------------------------------------------------------


def test_slow_reader_pauses_the_socket() -> None:
    gate = threading.Event()
    received: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.get_running_loop().run_in_executor(None, gate.wait)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            received.append(message["text"])
            if len(received) == 10:
                await send({"type": "websocket.send", "text": "got all"})

    with run_server(app, ws_max_queue=3) as server:
        client = RawClient(server.port)
        client.send(b"".join(frame(0x1, str(i).encode()) for i in range(10)))
        connection = wait_for(lambda: ws_connections(server))[0]
        wait_for(lambda: connection.read_paused)
        gate.set()
        assert client.read_frame() == (0x1, b"got all")
        assert not connection.read_paused
        client.close()
    assert received == [str(i) for i in range(10)]


def test_slow_writer_makes_send_wait() -> None:
    sent: list[int] = []
    chunk = os.urandom(1 << 20)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(32):
            await send({"type": "websocket.send", "bytes": chunk})
            sent.append(i)

    with run_server(app, ws_per_message_deflate=False) as server:
        client = RawClient(server.port)
        connection = wait_for(lambda: ws_connections(server))[0]
        # The client reads nothing: the socket buffers fill and send() waits for them to drain.
        wait_for(lambda: connection.drain_waiter is not None)
        assert len(sent) < 32
        for _ in range(32):
            assert client.read_frame() == (0x2, chunk)
        client.close()
    assert len(sent) == 32


def test_bytes_before_accept_are_kept_then_bounded() -> None:
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await asyncio.get_running_loop().run_in_executor(None, gate.wait)
        await send({"type": "websocket.accept"})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})

    with run_server(app) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(handshake())
        sock.sendall(frame(0x1, b"early"))
        stream = wait_for(lambda: ws_connections(server))[0].stream
        assert isinstance(stream, WebSocketStream)
        wait_for(lambda: stream.pending)
        gate.set()
        client = RawClient.__new__(RawClient)
        client.sock, client.buffer = sock, b""
        client.read_until(b"\r\n\r\n")
        assert client.read_frame() == (0x1, b"early")
        sock.close()

        gate.clear()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(handshake() + frame(0x2, b"x" * 70000))
        # Over the pre-accept buffer: the connection is dropped, not buffered without end.
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert b"101" not in data
        sock.close()
        gate.set()
