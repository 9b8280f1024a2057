"""WebSocket over HTTP/1.1 (RFC 6455 §4): the Upgrade handshake and the upgraded connection.

`upgrade_h1` is called by `H1Connection.handle_upgrade` for `Upgrade: websocket`. It checks
the opening handshake, answers a bad one itself (400, or 426 for an unsupported version),
and otherwise moves the socket to an `H1WebSocketConnection`: an asyncio protocol that feeds
bytes to a `WebSocketStream` and offers it the `WebSocketTransport` for HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any

from wsproto.handshake import generate_accept_token

from roadrunner.asgi.websocket_stream import WebSocketStream, websocket_scope
from roadrunner.logging import format_client

if TYPE_CHECKING:
    from roadrunner.asgi.stream import HTTPStream
    from roadrunner.config import Config
    from roadrunner.protocols.http1 import H1Connection

logger = logging.getLogger("roadrunner.error")

Headers = list[tuple[bytes, bytes]]
WS_VERSION = b"13"
WS_IMPLEMENTATIONS = ("auto", "wsproto")
UVICORN_WS_NAMES = ("websockets", "websockets-sansio")


def ws_enabled(config: Config) -> bool:
    """--ws: none serves upgrade requests as plain HTTP; uvicorn's names map to wsproto."""
    if config.ws == "none":
        return False
    if config.ws in UVICORN_WS_NAMES and not getattr(config, "ws_notice_given", False):
        config.ws_notice_given = True  # type: ignore[attr-defined]
        logger.info("--ws %s: roadrunner serves WebSocket with wsproto.", config.ws)
    return True


def handshake_error(headers: Headers) -> tuple[int, bytes, Headers] | None:
    """Check an HTTP/1.1 opening handshake (RFC 6455 §4.2.1); None when it is valid."""
    keys = [value for name, value in headers if name == b"sec-websocket-key"]
    versions = [value.strip() for name, value in headers if name == b"sec-websocket-version"]
    if versions != [WS_VERSION]:
        # RFC 6455 §4.4: name the version we speak and let the client retry.
        return 426, b"Unsupported WebSocket version.", [(b"sec-websocket-version", WS_VERSION)]
    if len(keys) != 1:
        return 400, b"Missing or repeated Sec-WebSocket-Key.", []
    try:
        decoded = base64.b64decode(keys[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 16:
        # RFC 6455 §4.1: the key is a base64-encoded 16-byte nonce.
        return 400, b"Invalid Sec-WebSocket-Key.", []
    return None


def upgrade_h1(connection: H1Connection, stream: HTTPStream) -> bool:
    """Take over an HTTP/1.1 connection for a WebSocket; False to serve it as plain HTTP."""
    config = connection.config
    scope = stream.scope
    if not ws_enabled(config) or scope["method"] != "GET" or scope["http_version"] != "1.1":
        return False  # RFC 9110 §7.8: a server may ignore Upgrade
    if stream.more_body or connection.active is not None or connection.pipeline:
        return False  # a handshake has no body and is not pipelined behind a response
    error = handshake_error(scope["headers"])
    if error is not None:
        status, body, extra = error
        logger.info(
            "Invalid WebSocket handshake from %s: %s",
            format_client(scope.get("client")), body.decode(),
        )
        connection.keep_alive = False
        connection.transport.write(
            b"HTTP/1.1 %d %s\r\n" % (status, b"Upgrade Required" if status == 426 else b"Bad Request")
            + b"".join(name + b": " + value + b"\r\n" for name, value in extra)
            + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        connection.close_connection()
        return True
    ws = H1WebSocketConnection(connection, scope)
    connection.upgraded_to = ws
    return True


class H1WebSocketConnection(asyncio.Protocol):
    """The socket after an HTTP/1.1 Upgrade: bytes in and out of one WebSocketStream."""

    def __init__(self, h1: H1Connection, http_scope: dict[str, Any]) -> None:
        self.config = h1.config
        self.state = h1.state
        self.loop = h1.loop
        self.transport: asyncio.Transport = h1.transport
        self.default_headers = h1.state.h1_default_headers
        self.key = next(value for name, value in http_scope["headers"] if name == b"sec-websocket-key")
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.chunked = False
        self.closed = False
        self.stream = WebSocketStream(websocket_scope(http_scope), self, self.config, h1.access_log)
        # The HTTP/1.1 connection hands over the socket and its place in the registry.
        h1.closing = True
        h1.cancel_timers()
        self.state.connections.discard(h1)
        self.state.connections.add(self)
        self.transport.set_protocol(self)
        if h1.read_paused:
            self.transport.resume_reading()
        task = self.loop.create_task(self.stream.run(h1.app))
        self.stream.task = task
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)
        self.state.total_requests += 1

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.stream.feed_data(data)

    def eof_received(self) -> bool | None:
        return None  # a half-closed WebSocket is a closed one

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        self.stream.feed_disconnect()
        self.wake_writer()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.wake_writer()

    def wake_writer(self) -> None:
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def shutdown(self) -> None:
        """Server shutdown: the stream closes with 1012."""
        self.stream.server_shutdown()

    # -- WebSocketTransport ------------------------------------------------------------------------

    def send_accept(self, headers: Headers) -> None:
        # RFC 6455 §4.2.2: 101 with Upgrade, Connection and the Sec-WebSocket-Accept digest.
        accept = generate_accept_token(self.key)
        parts = [
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n",
            b"sec-websocket-accept: " + accept + b"\r\n",
        ]
        names = {name for name, _ in headers}
        parts.extend(name + b": " + value + b"\r\n" for name, value in self.default_headers if name not in names)
        parts.extend(name + b": " + value + b"\r\n" for name, value in headers)
        parts.append(b"\r\n")
        self.transport.write(b"".join(parts))

    def send_response_head(self, status: int, headers: Headers) -> None:
        from roadrunner.protocols.http1 import STATUS_LINES

        names = {name for name, _ in headers}
        parts = [STATUS_LINES[status]]
        parts.extend(name + b": " + value + b"\r\n" for name, value in self.default_headers if name not in names)
        for name, value in headers:
            if name != b"connection":
                parts.append(name + b": " + value + b"\r\n")
        # RFC 9112 §6.3: without Content-Length the body is chunked; the connection closes after.
        self.chunked = b"content-length" not in names and b"transfer-encoding" not in names
        if self.chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(parts))

    def send_response_body(self, data: bytes, end: bool) -> None:
        if self.chunked:
            if data:
                self.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
            if end:
                self.transport.write(b"0\r\n\r\n")
        elif data:
            self.transport.write(data)

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self.drain_waiter = self.loop.create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.transport.abort()
