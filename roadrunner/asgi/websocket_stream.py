"""WebSocketStream: the ASGI websocket side of one connection, shared by h1, h2 and h3.

The connection protocol validates the opening handshake for its HTTP version and then only
moves bytes: it feeds what the peer sent (`feed_data`, `feed_disconnect`) and offers a
`WebSocketTransport` for what the stream writes. The stream owns everything else: the ASGI
scope and message order (connect, accept / close / denial response, send, receive,
disconnect), permessage-deflate negotiation (RFC 7692), framing through wsproto (RFC 6455),
the message size limit, keepalive pings, the close handshake and backpressure both ways.
"""

from __future__ import annotations

import asyncio
import enum
import http
import logging
import os
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from wsproto import ConnectionState, ConnectionType
from wsproto.connection import Connection
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError, split_comma_header

from roadrunner.asgi.errors import ClientDisconnected, caused_by_disconnect, release_frames
from roadrunner.asgi.validation import InvalidMessage, validate_response_start
from roadrunner.asgi.websocket_extensions import BoundedPerMessageDeflate, MessageSizeLimit
from roadrunner.asgi.websocket_fastpath import encode_frame, parse_frames, wsproto_idle
from roadrunner.logging import format_client, request_target

if TYPE_CHECKING:
    from roadrunner.config import Config

logger = logging.getLogger("roadrunner.error")

Headers = list[tuple[bytes, bytes]]
# Bytes a client may send before the server accepted (it must not, RFC 6455 §4.1); beyond this
# the connection is dropped rather than buffered.
PRE_ACCEPT_BUFFER = 65536
# Headers the app may not set in websocket.accept: the handshake owns them.
HANDSHAKE_HEADERS = frozenset(
    {b"sec-websocket-accept", b"sec-websocket-extensions", b"sec-websocket-protocol",
     b"upgrade", b"connection", b"content-length", b"transfer-encoding"}
)


class WebSocketTransport(Protocol):
    """What a connection offers a WebSocket stream (h1: the upgraded socket; h2/h3: a stream)."""

    def send_accept(self, headers: Headers) -> None:
        """Finish the opening handshake (h1: 101 Switching Protocols; h2/h3: 200)."""

    def send_response_head(self, status: int, headers: Headers) -> None:
        """Refuse the handshake with a plain HTTP response head (denial / 403 / 500)."""

    def send_response_body(self, data: bytes, end: bool) -> None: ...

    def write(self, data: bytes) -> None:
        """WebSocket frames, after send_accept."""

    async def drain(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        """Clean end after the close handshake or a response (h1 closes TCP; h2 ends the stream)."""

    def abort(self) -> None:
        """Unclean end: a dead or misbehaving peer (h1 aborts TCP; h2 resets the stream)."""


class Phase(enum.Enum):
    CONNECTING = 0  # waiting for the app's accept / close / denial response
    RESPONDING = 1  # the app is sending a denial HTTP response
    OPEN = 2  # accepted: frames flow
    CLOSED = 3  # the connection is over (close handshake done, failed or transport lost)


class WebSocketStream:
    """One WebSocket: the ASGI scope with its receive() and send()."""

    def __init__(
        self,
        scope: dict[str, Any],
        transport: WebSocketTransport,
        config: Config,
    ) -> None:
        self.scope = scope
        self.transport = transport
        self.loop = asyncio.get_event_loop()
        self.max_size = config.ws_max_size
        self.max_queue = max(1, config.ws_max_queue)
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.close_timeout = config.ws_close_timeout
        self.per_message_deflate = config.ws_per_message_deflate
        self.phase = Phase.CONNECTING
        self.response_status = 0  # of a websocket.http.response denial
        self.conn: Connection | None = None
        self.pending = bytearray()  # bytes received before accept
        self.queue: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None  # receive() waiting for a message
        self.plain_frames = False  # no permessage-deflate: outgoing frames are built directly
        self.connect_delivered = False
        self.app_closed = False  # the app sent websocket.close (or the server did for it)
        self.close_code = 1006
        self.close_reason = ""
        self.read_paused = False
        self.text_parts: list[str] = []
        self.bytes_parts: list[bytes] = []
        self.ping_handle: asyncio.TimerHandle | None = None
        self.ping_payload: bytes | None = None
        self.close_handle: asyncio.TimerHandle | None = None
        self.failure_code: int | None = None  # a protocol violation waiting for the queue to drain
        self.task: asyncio.Task[None] | None = None

    # -- events from the connection ------------------------------------------------------------------

    def feed_data(self, data: bytes) -> None:
        if self.phase is Phase.OPEN:
            conn = self.conn
            assert conn is not None
            if self.failure_code is None and wsproto_idle(conn):
                # The common frame bypasses wsproto (websocket_fastpath); from the first frame
                # that does not qualify on, wsproto parses as usual.
                used = parse_frames(data, self.max_size, self.deliver)
                if used == len(data):
                    return
                if used:
                    data = data[used:]
            conn.receive_data(data)
            self.handle_events()
        elif self.phase is Phase.CONNECTING:
            # RFC 6455 §4.1: the client waits for the handshake response; keep what came early.
            self.pending += data
            if len(self.pending) > PRE_ACCEPT_BUFFER:
                self.transport.abort()
                self.feed_disconnect()

    def feed_disconnect(self) -> None:
        """The transport is gone (TCP closed or reset, h2 stream reset)."""
        if self.phase is Phase.CLOSED:
            return
        self.finish(self.close_code if self.conn and self.conn.state is ConnectionState.CLOSED else 1006)

    def server_shutdown(self) -> None:
        """Graceful shutdown: close with 1012 Service Restart (RFC 6455 §7.4.1 registry)."""
        if self.phase is Phase.OPEN and not self.app_closed:
            self.start_close(1012, "")
        elif self.phase is Phase.CONNECTING and self.connect_delivered:
            pass  # the app is deciding; its answer still goes out
        elif self.phase is not Phase.RESPONDING:
            self.transport.close()
            self.finish(1012)

    # -- frames -----------------------------------------------------------------------------------------

    def handle_events(self) -> None:
        conn = self.conn
        assert conn is not None
        for event in conn.events():
            if isinstance(event, Message):
                self.on_message(event)
            elif isinstance(event, Ping):
                if conn.state is ConnectionState.OPEN:
                    self.transport.write(conn.send(event.response()))
            elif isinstance(event, Pong):
                self.on_pong(event.payload)
            elif isinstance(event, CloseConnection):
                self.on_close(event)
                return

    def on_message(self, event: Message[Any]) -> None:
        if isinstance(event, TextMessage):
            self.text_parts.append(event.data)
        elif isinstance(event, BytesMessage):
            self.bytes_parts.append(bytes(event.data))
        if not event.message_finished:
            return
        message: dict[str, Any]
        if isinstance(event, TextMessage):
            message = {"type": "websocket.receive", "text": "".join(self.text_parts)}
            self.text_parts = []
        else:
            message = {"type": "websocket.receive", "bytes": b"".join(self.bytes_parts)}
            self.bytes_parts = []
        self.deliver(message)

    def deliver(self, message: dict[str, Any]) -> None:
        """Queue a received message for the app and wake receive()."""
        self.queue.append(message)
        self.wake()
        if len(self.queue) >= self.max_queue and not self.read_paused:
            # Backpressure: the app reads slower than the peer sends.
            self.read_paused = True
            self.transport.pause_reading()

    def on_close(self, event: CloseConnection) -> None:
        conn = self.conn
        assert conn is not None
        if conn.state is ConnectionState.OPEN:
            # wsproto reports a protocol violation as a CloseConnection without a state change:
            # fail the connection (RFC 6455 §7.1.7) with the code it chose (1002, 1007, 1009).
            logger.info(
                "WebSocket protocol error from %s: %s",
                format_client(self.scope.get("client")), event.reason,
            )
            self.failure_code = int(event.code)
            if self.queue:
                # Messages that arrived intact before the violation are still the app's to
                # answer; fail once it asks for more (or after close_timeout at the latest).
                self.transport.pause_reading()
                self.close_handle = self.loop.call_later(self.close_timeout, self.fail_now)
            else:
                self.fail_now()
            return
        if conn.state is ConnectionState.REMOTE_CLOSING:
            # RFC 6455 §5.5.1: answer a Close with a Close, echoing the status code.
            self.transport.write(conn.send(event.response()))
        # RFC 6455 §7.1.1: once the handshake is done, the server closes the TCP connection.
        self.transport.close()
        self.finish(int(event.code), event.reason or "")

    def fail_now(self) -> None:
        """Fail the connection after a protocol violation: Close with its code, then drop."""
        code, self.failure_code = self.failure_code, None
        if code is None or self.phase is Phase.CLOSED:
            return
        self.write_close(code, "")
        self.transport.close()
        self.finish(code, "")

    def write_close(self, code: int, reason: str) -> None:
        conn = self.conn
        if conn is not None and conn.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self.transport.write(conn.send(CloseConnection(code=code, reason=reason or None)))

    def start_close(self, code: int, reason: str) -> None:
        """Send Close and wait for the peer's, at most close_timeout (RFC 6455 §7.1.2)."""
        self.app_closed = True
        self.write_close(code, reason)
        if self.close_handle is None and self.phase is Phase.OPEN:
            self.close_handle = self.loop.call_later(self.close_timeout, self.on_close_timeout)

    def on_close_timeout(self) -> None:
        self.close_handle = None
        if self.phase is not Phase.CLOSED:
            logger.info("WebSocket close handshake timed out for %s", format_client(self.scope.get("client")))
            self.transport.abort()
            self.finish(1006)

    def finish(self, code: int, reason: str = "") -> None:
        """The connection is over: tell the app (after what is queued) and stop the timers."""
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self.close_code = code
        self.close_reason = reason
        for handle in (self.ping_handle, self.close_handle):
            if handle is not None:
                handle.cancel()
        self.ping_handle = self.close_handle = None
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- keepalive ----------------------------------------------------------------------------------

    def schedule_ping(self) -> None:
        if self.ping_interval and self.phase is Phase.OPEN:
            self.ping_handle = self.loop.call_later(self.ping_interval, self.send_ping)

    def send_ping(self) -> None:
        conn = self.conn
        if self.phase is not Phase.OPEN or conn is None or conn.state is not ConnectionState.OPEN:
            return
        self.ping_payload = os.urandom(4)
        self.transport.write(conn.send(Ping(payload=self.ping_payload)))
        if self.ping_timeout:
            self.ping_handle = self.loop.call_later(self.ping_timeout, self.on_ping_timeout)
        else:
            self.schedule_ping()

    def on_pong(self, payload: bytes) -> None:
        if self.ping_payload is not None and payload == self.ping_payload:
            self.ping_payload = None
            if self.ping_handle is not None:
                self.ping_handle.cancel()
            self.schedule_ping()

    def on_ping_timeout(self) -> None:
        """A peer that does not answer a ping in time is dead: close 1011 and drop it."""
        self.ping_handle = None
        logger.info("WebSocket keepalive ping timeout for %s", format_client(self.scope.get("client")))
        self.write_close(1011, "keepalive ping timeout")
        self.transport.abort()
        self.finish(1006)

    # -- running the app ------------------------------------------------------------------------------

    async def run(self, app: Any) -> None:
        """Call the app; answer for it when it fails or returns without finishing."""
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and self.phase is Phase.CLOSED:
                raise
            if isinstance(exc, Exception) and caused_by_disconnect(exc):
                # The app let our ClientDisconnected out (uvicorn: silent); closed already.
                release_frames(exc)
                self.fail_app(1011)
                return
            logger.error("Exception in ASGI application\n", exc_info=exc)
            self.fail_app(1011)
            if not isinstance(exc, Exception):
                raise
        else:
            if self.phase is Phase.CONNECTING:
                logger.error("ASGI callable returned without completing handshake.")  # uvicorn's words
                self.fail_app(1011)
            elif self.phase is Phase.RESPONDING:
                logger.error("ASGI callable returned without completing handshake.")  # uvicorn's words
                self.transport.abort()
                self.finish(1006)
            elif self.phase is Phase.OPEN and not self.app_closed:
                self.start_close(1000, "")

    def fail_app(self, code: int) -> None:
        if self.phase is Phase.CONNECTING:
            self.respond_plain(500, b"Internal Server Error")
        elif self.phase is Phase.RESPONDING:
            self.transport.abort()
            self.finish(1006)
        elif self.phase is Phase.OPEN and not self.app_closed:
            self.start_close(code, "")

    def respond_plain(self, status: int, body: bytes) -> None:
        self.transport.send_response_head(
            status,
            [(b"content-type", b"text/plain; charset=utf-8"),
             (b"content-length", str(len(body)).encode())],
        )
        self.transport.send_response_body(body, True)
        log_rejected(status)
        self.transport.close()
        self.finish(1006)

    # -- ASGI receive / send ----------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if not self.connect_delivered:
            self.connect_delivered = True
            return {"type": "websocket.connect"}
        if not self.queue and self.failure_code is not None:
            self.fail_now()
        while not self.queue and self.phase is not Phase.CLOSED:
            # One future per wait, set by deliver() or finish().
            waiter = self.waiter = self.loop.create_future()
            await waiter
        if self.queue:
            message = self.queue.popleft()
            if self.read_paused and len(self.queue) < self.max_queue:
                self.read_paused = False
                self.transport.resume_reading()
            return message
        return {"type": "websocket.disconnect", "code": self.close_code, "reason": self.close_reason}

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if (
            message_type == "websocket.send" and self.plain_frames and self.phase is Phase.OPEN
            and not self.app_closed and self.conn is not None
            and self.conn.state is ConnectionState.OPEN
        ):
            # websocket_fastpath: an unfragmented, uncompressed frame, built without wsproto.
            data = self.message_data(message)
            if isinstance(data, str):
                self.transport.write(encode_frame(data.encode(), False))
            else:
                self.transport.write(encode_frame(data, True))
            await self.transport.drain()
            return
        if self.phase is Phase.CONNECTING:
            if message_type == "websocket.accept":
                self.accept(message)
            elif message_type == "websocket.close":
                # ASGI: a close before accept rejects the handshake with HTTP 403.
                self.log(403)
                self.respond_plain(403, b"")
            elif message_type == "websocket.http.response.start":
                self.start_response(message)
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', but got '{message_type}'."
                )
            return
        if self.phase is Phase.RESPONDING:
            if message_type != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body', but got '{message_type}'.")
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray)):
                raise RuntimeError("websocket.http.response.body 'body' must be bytes.")
            more_body = bool(message.get("more_body", False))
            self.transport.send_response_body(bytes(body), not more_body)
            if more_body:
                await self.transport.drain()
            else:
                log_rejected(self.response_status)
                self.transport.close()
                self.finish(1006)
            return
        if self.app_closed:
            if message_type == "websocket.close":
                return
            raise RuntimeError(f"Unexpected ASGI message '{message_type}', after sending 'websocket.close'.")
        if self.phase is Phase.CLOSED:
            if message_type == "websocket.close":
                return
            if message_type == "websocket.send":
                raise ClientDisconnected(f"WebSocket closed with code {self.close_code}.")
            raise RuntimeError(f"Unexpected ASGI message '{message_type}' on a closed WebSocket.")
        conn = self.conn
        assert conn is not None
        if message_type == "websocket.send":
            data = self.message_data(message)
            try:
                frame = conn.send(
                    TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
                )
            except LocalProtocolError:
                raise ClientDisconnected("WebSocket is closing.") from None
            self.transport.write(frame)
            await self.transport.drain()
        elif message_type == "websocket.close":
            code = message.get("code") or 1000
            reason = message.get("reason") or ""
            if not isinstance(code, int) or not isinstance(reason, str):
                raise RuntimeError("websocket.close needs an int 'code' and a str 'reason'.")
            if conn.state is ConnectionState.OPEN:
                self.start_close(code, reason)
            else:
                self.app_closed = True
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message_type}', after 'websocket.accept'.")

    @staticmethod
    def message_data(message: dict[str, Any]) -> bytes | str:
        data_bytes = message.get("bytes")
        text = message.get("text")
        if data_bytes is not None and text is None and isinstance(data_bytes, (bytes, bytearray)):
            return bytes(data_bytes)
        if text is not None and data_bytes is None and isinstance(text, str):
            return text
        raise RuntimeError("websocket.send needs exactly one of 'bytes' (bytes) or 'text' (str).")

    def accept(self, message: dict[str, Any]) -> None:
        headers: Headers = []
        for name, value in message.get("headers") or []:
            name = bytes(name).lower()
            if name not in HANDSHAKE_HEADERS:
                headers.append((name, bytes(value)))
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if subprotocol not in self.scope["subprotocols"]:
                # RFC 6455 §4.2.2: the server selects one of the client's subprotocols.
                raise RuntimeError(f"Subprotocol {subprotocol!r} was not offered by the client.")
            headers.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
        extensions: list[Extension] = []
        if self.per_message_deflate:
            offers = [
                offer for name, value in self.scope["headers"]
                if name == b"sec-websocket-extensions"
                for offer in split_comma_header(value)
            ]
            deflate = BoundedPerMessageDeflate(self.max_size)
            accepted = server_extensions_handshake(offers, [deflate]) if offers else None
            if accepted is not None:
                headers.append((b"sec-websocket-extensions", accepted))
                extensions.append(deflate)
        extensions.append(MessageSizeLimit(self.max_size))
        self.plain_frames = len(extensions) == 1  # permessage-deflate compresses through wsproto
        self.transport.send_accept(headers)
        self.log("accepted")
        logger.info("connection open")
        self.conn = Connection(ConnectionType.SERVER, extensions=extensions)
        self.phase = Phase.OPEN
        self.schedule_ping()
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self.feed_data(data)

    def start_response(self, message: dict[str, Any]) -> None:
        """ASGI websocket.http.response: deny the upgrade with an ordinary HTTP response."""
        try:
            status, headers, _ = validate_response_start(
                {"type": "http.response.start", "status": message.get("status"),
                 "headers": message.get("headers", [])}
            )
        except InvalidMessage as exc:
            raise RuntimeError(str(exc)) from None
        self.phase = Phase.RESPONDING
        self.response_status = status
        self.transport.send_response_head(status, headers)
        self.log(status)

    def log(self, outcome: int | str) -> None:
        """The handshake line, on the error logger like uvicorn's (not an access record)."""
        logger.info(
            '%s - "WebSocket %s" %s',
            format_client(self.scope.get("client")),
            request_target(self.scope),
            f"[{outcome}]" if isinstance(outcome, str) else outcome,
        )


def log_rejected(status: int) -> None:
    """The line the websockets library logs (under uvicorn) once a refusal is sent."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    logger.info("connection rejected (%d %s)", status, phrase)


def websocket_scope(http_scope: dict[str, Any]) -> dict[str, Any]:
    """The websocket scope of an upgrade request, from the HTTP scope a connection built."""
    headers = http_scope["headers"]
    subprotocols = [
        token
        for name, value in headers
        if name == b"sec-websocket-protocol"
        for token in split_comma_header(value)
    ]
    scope = {
        key: value for key, value in http_scope.items() if key not in ("method", "extensions")
    }
    scope["type"] = "websocket"
    scope["asgi"] = {"version": http_scope["asgi"]["version"], "spec_version": "2.5"}
    scope["scheme"] = "wss" if http_scope["scheme"] in ("https", "wss") else "ws"
    scope["subprotocols"] = subprotocols
    scope["extensions"] = {"websocket.http.response": {}}
    return scope

