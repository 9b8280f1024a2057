"""WebSocket opening handshakes and byte transports: HTTP/1.1 Upgrade, h2 and h3 CONNECT.

HTTP/1.1 (RFC 6455 §4): `upgrade_h1` is called by `H1Connection.handle_upgrade` for
`Upgrade: websocket`. It answers a bad handshake itself (400, or 426 for an unsupported
version) and otherwise moves the socket to an `H1WebSocketConnection`.

HTTP/2 (RFC 8441): `upgrade_h2` is called by `Http2Connection` for an Extended CONNECT
request; an `H2WebSocketBridge` carries the WebSocket in the stream's DATA frames.

HTTP/3 (RFC 9220): `upgrade_h3` is called by `Http3Connection` the same way; an
`H3WebSocketBridge` carries the WebSocket in HTTP/3 DATA frames. Both bridges share
`StreamWebSocketBridge`, and both requests are checked by `extended_connect_error`.

Either way a `WebSocketStream` does the rest; these classes only move bytes.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any, Protocol

from wsproto.handshake import generate_accept_token

from roadrunner.asgi.scope import asgi_info, http_scope
from roadrunner.asgi.websocket_stream import WebSocketStream, log_rejected, websocket_scope
from roadrunner.logging import format_client

if TYPE_CHECKING:
    from roadrunner.asgi.stream import HTTPStream
    from roadrunner.config import Config
    from roadrunner.protocols.http1 import H1Connection
    from roadrunner.protocols.http2.connection import Http2Connection
    from roadrunner.protocols.http2.stream import H2StreamTransport
    from roadrunner.protocols.http3.connection import Http3Connection
    from roadrunner.protocols.http3.stream import H3StreamTransport

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
    if connection.over_concurrency_limit():
        return False  # shed like any request: served as plain HTTP, run_stream answers 503
    error = handshake_error(scope["headers"])
    if error is not None:
        status, body, extra = error
        # uvicorn's line (the websockets library's); the reason only at DEBUG, as there.
        log_rejected(status)
        logger.debug(
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
    # Reads reach it as they reached the HTTP/1.1 connection (tcp.reads_by_data_received).
    ws_class = PlainReadsH1WebSocketConnection if isinstance(connection, asyncio.Protocol) else (
        H1WebSocketConnection)
    ws = ws_class(connection, scope)
    connection.upgraded_to = ws
    return True


class H1WebSocketConnection(asyncio.BufferedProtocol):
    """The socket after an HTTP/1.1 Upgrade: bytes in and out of one WebSocketStream."""

    def __init__(self, h1: H1Connection, http_scope: dict[str, Any]) -> None:
        self.config = h1.config
        self.state = h1.state
        self.loop = h1.loop
        self.transport: asyncio.Transport = h1.transport
        self.default_headers = h1.state.default_headers
        self.key = next(value for name, value in http_scope["headers"] if name == b"sec-websocket-key")
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.chunked = False
        self.closed = False
        self.stream = WebSocketStream(websocket_scope(http_scope), self, self.config)
        # The HTTP/1.1 connection hands over the socket and its place in the registry.
        h1.closing = True
        h1.cancel_timers()
        self.state.connections.discard(h1)
        self.state.connections.add(self)
        self.transport.set_protocol(self)
        if h1.read_paused:
            self.transport.resume_reading()
        self.stream.task = self.state.start_task(self.loop, self.stream.run(h1.app))

    # -- asyncio.BufferedProtocol ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.stream.feed_data(data)

    # A buffered protocol: reads land in the server's one buffer (tcp.reads_by_data_received).
    def get_buffer(self, sizehint: int) -> memoryview:
        return self.state.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.stream.feed_data(self.state.read_buffer[:nbytes].tobytes())

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


# -- HTTP/2 and HTTP/3: Extended CONNECT (RFC 8441, RFC 9220) -----------------------------------


class PlainReadsH1WebSocketConnection(H1WebSocketConnection, asyncio.Protocol):
    """H1WebSocketConnection taking reads by data_received: uvloop's plaintext transport (uvloop
    treats an asyncio.Protocol as one; see tcp.reads_by_data_received)."""


def split_fields(headers: Headers) -> tuple[dict[bytes, bytes], Headers]:
    """Pseudo-header fields (by name) and regular fields, in order."""
    pseudo = {name: value for name, value in headers if name[:1] == b":"}
    return pseudo, [(name, value) for name, value in headers if name[:1] != b":"]


def extended_connect_error(
    pseudo: dict[bytes, bytes], regular: Headers, request_ended: bool
) -> tuple[int, Headers] | None:
    """Check an Extended CONNECT request (RFC 8441 §4, RFC 9220 §3); None when it is valid."""
    versions = [value.strip() for name, value in regular if name == b"sec-websocket-version"]
    if pseudo.get(b":method") != b"CONNECT" or pseudo.get(b":protocol") != b"websocket":
        return 501, []  # a protocol we do not tunnel
    if request_ended or not pseudo.get(b":path") or not pseudo.get(b":scheme"):
        # RFC 8441 §4: :scheme and :path are required, and the stream carries the WebSocket,
        # so it cannot end with the request head.
        return 400, []
    if versions != [WS_VERSION]:
        return 400, [(b"sec-websocket-version", WS_VERSION)]  # RFC 6455 §4.4
    return None


def extended_connect_scope(
    pseudo: dict[bytes, bytes],
    regular: Headers,
    *,
    http_version: str,
    config: Config,
    server: tuple[str, int] | None,
    client: tuple[str, int] | None,
    app_state: dict[str, Any],
) -> dict[str, Any]:
    """The websocket scope of a valid Extended CONNECT request."""
    authority = pseudo.get(b":authority")
    if authority and not any(name == b"host" for name, _ in regular):
        regular.insert(0, (b"host", authority))  # RFC 9113 §8.3.1 / RFC 9114 §4.3.1: ASGI reads Host
    raw_path, _, query = pseudo[b":path"].partition(b"?")
    return websocket_scope(http_scope(
        asgi=asgi_info(config.asgi_version), http_version=http_version, server=server,
        client=client, scheme=pseudo[b":scheme"].decode("latin-1"), method="CONNECT",
        root_path=config.root_path, raw_path=raw_path, query_string=query, headers=regular,
        app_state=app_state,
    ))


def upgrade_h2(connection: Http2Connection, stream: H2StreamTransport, headers: Headers) -> None:
    """Serve an Extended CONNECT request (RFC 8441 §4) as a WebSocket on its stream."""
    pseudo, regular = split_fields(headers)
    error = extended_connect_error(pseudo, regular, stream.request_ended)
    if error is not None:
        status, extra = error
        log_rejected(status)
        logger.debug("Invalid HTTP/2 WebSocket request from %s: %d", connection.peer_text(), status)
        connection.send_headers(
            stream, [(b":status", str(status).encode()), *extra, (b"content-length", b"0")], True
        )
        stream.end_sent = True
        connection.maybe_finish(stream)
        return
    scope = extended_connect_scope(
        pseudo, regular, http_version="2", config=connection.config, server=connection.server,
        client=connection.client, app_state=connection.app_state,
    )
    H2WebSocketBridge(connection, stream, scope)


def upgrade_h3(
    connection: Http3Connection, stream: H3StreamTransport, pseudo: dict[bytes, bytes], regular: Headers
) -> None:
    """Serve an Extended CONNECT request (RFC 9220 §3) as a WebSocket on its request stream."""
    error = extended_connect_error(pseudo, regular, stream.request_ended)
    if error is not None:
        status, extra = error
        log_rejected(status)
        logger.debug("Invalid HTTP/3 WebSocket request from %s: %d", connection.peer_text(), status)
        stream.write_head(status, [*extra, (b"content-length", b"0")], True)
        connection.finish_stream(stream)
        return
    scope = extended_connect_scope(
        pseudo, regular, http_version="3", config=connection.config,
        server=connection.server_address, client=connection.client, app_state=connection.app_state,
    )
    H3WebSocketBridge(connection, stream, scope)


class TunnelStream(Protocol):
    """What an h2 or h3 request stream offers a bridge (H2StreamTransport, H3StreamTransport)."""

    def write_head(self, status: int, headers: Headers, end_stream: bool) -> None: ...

    def write_body(self, data: bytes, end_stream: bool) -> None: ...

    async def drain(self) -> None: ...

    def body_consumed(self, nbytes: int) -> None: ...

    def response_complete(self) -> None: ...


class StreamWebSocketBridge(abc.ABC):
    """One WebSocket on an h2 or h3 request stream: its DATA frames are the WebSocket's bytes.

    The connection sees it where it expects an HTTPStream (feed_body / feed_end /
    feed_disconnect); the WebSocketStream sees a WebSocketTransport. Backpressure on reading
    is the stream's flow-control credit: while paused, received bytes are not acknowledged,
    and writing waits in the stream's drain() for the peer's credit.
    """

    def __init__(
        self, connection: Http2Connection | Http3Connection, stream: TunnelStream,
        scope: dict[str, Any],
    ) -> None:
        self.stream = stream
        self.response_started = True  # nothing here is an HTTP request body with a limit
        self.response_complete = False
        self.read_paused = False
        self.finished = False
        self.held = 0
        self.ws = WebSocketStream(scope, self, connection.config)
        self.task = self.ws.task = connection.state.start_task(connection.loop, self.ws.run(connection.app))

    # -- events from the connection ------------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        self.ws.feed_data(data)
        if self.read_paused:
            self.held += len(data)
        else:
            self.stream.body_consumed(len(data))

    def feed_end(self) -> None:
        # RFC 8441 §4, RFC 9220 §3: the end of the stream is the TCP FIN of the WebSocket.
        self.ws.feed_disconnect()
        self.close()

    def feed_disconnect(self) -> None:
        self.ws.feed_disconnect()

    def server_shutdown(self) -> None:
        self.ws.server_shutdown()

    # -- WebSocketTransport ----------------------------------------------------------------------

    def send_accept(self, headers: Headers) -> None:
        self.stream.write_head(200, headers, False)  # RFC 8441 §5, RFC 9220 §3: 2xx accepts

    def send_response_head(self, status: int, headers: Headers) -> None:
        self.stream.write_head(status, headers, False)

    def send_response_body(self, data: bytes, end: bool) -> None:
        if end:
            self.response_complete = True
        self.stream.write_body(data, end)

    def write(self, data: bytes) -> None:
        self.stream.write_body(data, False)

    async def drain(self) -> None:
        await self.stream.drain()

    def pause_reading(self) -> None:
        self.read_paused = True

    def resume_reading(self) -> None:
        self.read_paused = False
        held, self.held = self.held, 0
        if held:
            self.stream.body_consumed(held)

    def close(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.response_complete = True
        self.stream.write_body(b"", True)
        self.stream.response_complete()

    @abc.abstractmethod
    def abort(self) -> None:
        """Unclean end: reset the stream the way its protocol maps a TCP RST."""


class H2WebSocketBridge(StreamWebSocketBridge):
    """A WebSocket on an HTTP/2 stream (RFC 8441)."""

    def __init__(
        self, connection: Http2Connection, stream: H2StreamTransport, scope: dict[str, Any]
    ) -> None:
        self.connection = connection
        self.h2_stream = stream
        super().__init__(connection, stream, scope)
        stream.http = self

    def abort(self) -> None:
        from h2.errors import ErrorCodes

        # RFC 8441 §4: a TCP RST is RST_STREAM with CANCEL.
        self.connection.reset(self.h2_stream, ErrorCodes.CANCEL)


class H3WebSocketBridge(StreamWebSocketBridge):
    """A WebSocket on an HTTP/3 request stream (RFC 9220)."""

    def __init__(
        self, connection: Http3Connection, stream: H3StreamTransport, scope: dict[str, Any]
    ) -> None:
        self.connection = connection
        self.h3_stream = stream
        super().__init__(connection, stream, scope)
        stream.stream = self
        self.task.add_done_callback(lambda _task: self.retire())

    def retire(self) -> None:
        """Forget the stream once both the app and the stream are done.

        The app may return before the close handshake ends (websocket.close, then return):
        the stream stays registered so the peer's Close still reaches the WebSocketStream.
        """
        if self.finished and self.task.done():
            self.connection.stream_done(self.h3_stream)

    def feed_disconnect(self) -> None:
        # The peer reset or stopped the stream (a TCP RST, RFC 9220 §3): end our half too, so
        # the QUIC stream is retired and its stream credit returns to the client.
        super().feed_disconnect()
        self.abort()

    def close(self) -> None:
        super().close()
        self.retire()

    def abort(self) -> None:
        from aioquic.h3.connection import ErrorCode

        # RFC 9220 §3: a TCP RST maps to a stream reset with H3_REQUEST_CANCELLED.
        self.finished = True
        self.response_complete = True
        self.h3_stream.closed = True
        self.connection.reset_stream(self.h3_stream.stream_id, ErrorCode.H3_REQUEST_CANCELLED)
        self.retire()
