"""The StreamTransport of one HTTP/2 stream, which the shared HTTPStream writes through."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from h2.errors import ErrorCodes

from roadrunner.protocols.http2.guards import guard_counters
from roadrunner.protocols.http2.rules import HOP_BY_HOP, STATUS, Headers

if TYPE_CHECKING:
    from roadrunner.asgi.stream import HTTPStream
    from roadrunner.protocols.http2.connection import Http2Connection
    from roadrunner.protocols.websocket import H2WebSocketBridge

logger = logging.getLogger("roadrunner.error")
# Body chunks of one stream up to this many bytes wait for the end of the loop pass and leave
# as one DATA frame (16,384: the smallest SETTINGS_MAX_FRAME_SIZE, RFC 9113 §6.5.2), instead of a
# frame (9 bytes of header, RFC 9113 §4.1) per ASGI send: a gRPC stream of small messages.
COALESCE_LIMIT: Final = 16384


class H2StreamTransport:
    """The StreamTransport of one HTTP/2 stream: writes within the peer's flow-control window."""

    supports_trailers = True
    __slots__ = (
        "connection", "stream_id", "http", "pending", "pending_end", "pending_trailers",
        "drain_waiter", "unacked", "received", "request_ended", "end_sent", "closed", "h1_body",
        "head", "answered", "sent", "deferred",
    )

    def __init__(self, connection: Http2Connection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        # An Extended CONNECT stream (RFC 8441) carries a WebSocket bridge instead.
        self.http: HTTPStream | H2WebSocketBridge | None = None
        self.pending = bytearray()
        self.pending_end = False
        self.pending_trailers: Headers | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.unacked = 0  # request body bytes received and not yet consumed by the app
        self.received = 0
        self.request_ended = False
        self.end_sent = False
        self.closed = False
        self.h1_body = False  # the body of an h2c upgrade request arrives in HTTP/1.1 framing
        self.sent = 0  # response DATA bytes handed to the engine (the response-send pace guard)
        self.head: Headers | None = None  # response HEADERS held until this loop iteration ends
        self.answered = False  # the response is complete, the request still open
        self.deferred = False  # pending body waits for this loop pass's flush (COALESCE_LIMIT)

    # StreamTransport -------------------------------------------------------------------------

    def write_informational(self, status: int, headers: Headers) -> None:
        if not self.closed:
            self.connection.send_headers(self, [(b":status", STATUS[status]), *headers], False)

    def write_head(self, status: int, headers: Headers, end_stream: bool) -> None:
        if self.closed:
            return
        state = self.connection.state
        defaults = state.default_headers
        default_names = state.default_header_names
        out = [(b":status", STATUS[status]), *defaults]
        replaced = False
        for item in headers:
            name = item[0]
            if name in HOP_BY_HOP:
                continue  # RFC 9113 §8.2.2
            if name in default_names:
                replaced = True
            out.append(item)
        if replaced:
            # The app's own Server / Date (or other default) replaces the server's.
            names = {name for name, _ in headers}
            out[1:1 + len(defaults)] = [item for item in defaults if item[0] not in names]
        if end_stream:
            self.connection.send_headers(self, out, True)
            self.end_sent = True
            return
        # Held until the app's next message or the end of this loop iteration (flush): an empty
        # last body then ends the stream on the HEADERS frame itself (RFC 9113 §8.1), which a
        # gRPC Trailers-Only answer requires (PROTOCOL-HTTP2.md: END_STREAM on its HEADERS).
        self.head = out
        self.connection.held_heads.append(self)
        self.connection.schedule_flush()

    def send_head(self, end_stream: bool = False) -> None:
        head = self.head
        if head is not None:
            self.head = None
            if not self.closed:
                self.connection.send_headers(self, head, end_stream)
                self.end_sent = end_stream

    def write_body(self, data: bytes, end_stream: bool) -> None:
        if self.closed:
            return
        if self.head is not None:
            empty_end = end_stream and not data and not self.pending
            self.send_head(end_stream=empty_end)
            if empty_end:
                self.pending_end = True
                return
        pending = self.pending
        was_waiting = bool(pending) and not self.deferred  # held back by a window
        if data:
            pending += data
        self.pending_end = self.pending_end or end_stream
        if not end_stream and not was_waiting and len(pending) < COALESCE_LIMIT:
            if not self.deferred:
                self.deferred = True
                self.connection.deferred.append(self)
                self.connection.schedule_flush()
            return
        self.connection.push(self)

    def write_trailers(self, headers: Headers) -> None:
        if self.closed:
            return
        self.send_head()
        self.pending_trailers = headers
        self.pending_end = True
        self.connection.push(self)

    async def drain(self) -> None:
        connection = self.connection
        while not self.closed and ((self.pending and not self.deferred)
                                   or connection.write_paused):
            self.drain_waiter = connection.loop.create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None

    def pause_reading(self) -> None:
        """Request bodies are bounded by the stream's flow-control window, not by pausing TCP."""

    def resume_reading(self) -> None:
        """See pause_reading."""

    def body_consumed(self, nbytes: int) -> None:
        # The app took nbytes: hand that much window back to the client.
        if self.h1_body or self.closed:
            return
        # Window already handed back for body left unread (an answered stream, maybe_finish) is
        # not handed back twice: at most what is still unacknowledged.
        nbytes = min(nbytes, self.unacked)
        if nbytes > 0:
            self.unacked -= nbytes
            self.connection.acknowledge(self.stream_id, nbytes)

    def abort(self) -> None:
        self.connection.reset(self, ErrorCodes.INTERNAL_ERROR)

    def cancel(self) -> None:
        """The client is too slow (asgi/pace.py): RST_STREAM. After a complete answer (the 408)
        NO_ERROR, which asks the client to stop sending and keep the response (RFC 9113 §8.1);
        mid-response CANCEL, the stream is no longer needed (RFC 9113 §7)."""
        http = self.http
        complete = http is not None and http.response_complete
        self.connection.reset(self, ErrorCodes.NO_ERROR if complete else ErrorCodes.CANCEL)

    def body_held(self) -> bool:
        """Unread bodies hold the connection window (RFC 9113 §6.9): the client cannot send."""
        connection = self.connection
        held = sum(stream.unacked for stream in connection.streams.values())
        return held >= connection.config.h2_connection_window_size // 2

    def response_complete(self) -> None:
        self.connection.state.requests_done += 1
        self.connection.maybe_finish(self)

    # the response-send pace guard (asgi/pace.py) -------------------------------------------

    def pace_probe(self) -> tuple[bool, int] | None:
        """Waiting while body waits for this client's WINDOW_UPDATE (RFC 9113 §6.9.1); a stalled
        TCP transport is the connection's to judge. Moved: DATA bytes sent."""
        connection = self.connection
        if self.closed or connection.dead or not self.pending:
            return None
        try:
            blocked = connection.h2.local_flow_control_window(self.stream_id) <= 0
        except Exception:  # the engine no longer knows the stream
            return None
        return blocked and not connection.write_paused, self.sent

    def pace_trip(self) -> None:
        """The client gives this stream no window: RST_STREAM(CANCEL); the others go on."""
        connection = self.connection
        logger.info(
            "HTTP/2 response send too slow to %s: resetting stream %d",
            connection.peer_text(), self.stream_id,
        )
        guard_counters["send_timeout"] += 1
        connection.reset(self, ErrorCodes.CANCEL)

    # events ----------------------------------------------------------------------------------

    def wake(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
