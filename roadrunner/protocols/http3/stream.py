"""The StreamTransport of one HTTP/3 request stream, which the shared HTTPStream writes through."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aioquic.h3.connection import ErrorCode

from roadrunner.asgi.validation import CONNECTION_SPECIFIC  # RFC 9114 §4.2
from roadrunner.protocols.http3.framing import Headers

if TYPE_CHECKING:
    from roadrunner.asgi.stream import HTTPStream
    from roadrunner.protocols.http3.connection import Http3Connection
    from roadrunner.protocols.websocket import H3WebSocketBridge

logger = logging.getLogger("roadrunner.error")



class H3StreamTransport:
    """The `StreamTransport` of one request stream: HTTPStream commands become HTTP/3 frames."""

    supports_trailers = True

    __slots__ = (
        "connection", "stream_id", "stream", "closed", "request_ended", "head_sent", "received",
    )

    def __init__(self, connection: Http3Connection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.stream: HTTPStream | H3WebSocketBridge | None = None
        self.closed = False  # reset, stopped, or the connection is gone
        self.request_ended = False
        self.head_sent = False
        self.received = 0  # request body bytes so far (--limit-request-body)

    def write_informational(self, status: int, headers: Headers) -> None:
        if not self.closed and not self.head_sent:
            self.connection.send_informational(self.stream_id, [(b":status", b"%d" % status), *headers])

    def write_head(self, status: int, headers: Headers, end_stream: bool) -> None:
        if self.closed:
            return
        self.head_sent = True
        out: Headers = [(b":status", b"%d" % status)]
        app_names = {name for name, _ in headers}
        for name, value in self.connection.state.default_headers:
            if name not in app_names and name != b"alt-svc":
                out.append((name, value))
        out.extend(item for item in headers if item[0] not in CONNECTION_SPECIFIC)
        self.connection.send_headers(self.stream_id, out, end_stream)
        if end_stream:
            self.closed = True

    def write_body(self, data: bytes, end_stream: bool) -> None:
        if self.closed or (not data and not end_stream):
            return
        self.connection.send_data(self.stream_id, data, end_stream)
        if end_stream:
            self.closed = True

    def write_trailers(self, headers: Headers) -> None:
        if self.closed:
            return
        # RFC 9114 §4.1: a trailing HEADERS frame ends the response.
        self.connection.send_headers(
            self.stream_id, [item for item in headers if item[0] not in CONNECTION_SPECIFIC], True
        )
        self.closed = True

    async def drain(self) -> None:
        await self.connection.drain(self)

    def pause_reading(self) -> None:
        """Nothing to do: the peer is held back by the flow-control credit we withhold."""

    def resume_reading(self) -> None:
        """Nothing to do: credit is returned in `body_consumed`."""

    def body_consumed(self, nbytes: int) -> None:
        self.connection.body_consumed(self.stream_id, nbytes)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.connection.reset_stream(self.stream_id, ErrorCode.H3_INTERNAL_ERROR)

    def cancel(self) -> None:
        """The client is too slow (asgi/pace.py): RFC 9114 §8.1 H3_REQUEST_CANCELLED, unless
        the answer is already out (its unread request half was stopped with H3_NO_ERROR)."""
        if not self.closed:
            self.closed = True
            self.connection.reset_stream(self.stream_id, ErrorCode.H3_REQUEST_CANCELLED)

    def body_held(self) -> bool:
        """Other streams' unread bodies hold the connection credit: the client cannot send."""
        quic = self.connection.quic
        return quic.unconsumed_total >= quic.connection_window // 2

    def response_complete(self) -> None:
        self.connection.response_complete(self)

    # -- the response-send pace guard (asgi/pace.py) --------------------------------------------

    def pace_probe(self) -> tuple[bool, int] | None:
        """Waiting while response bytes wait to be sent (flow control or congestion: the
        client's acknowledgements and credit); moved: the bytes sent so far."""
        connection = self.connection
        quic_stream = None if connection.terminated else connection.quic._streams.get(self.stream_id)
        if quic_stream is None:
            return None
        sender = quic_stream.sender
        if sender._buffer_stop <= sender.highest_offset:
            return None
        return True, sender.highest_offset

    def pace_trip(self) -> None:
        logger.info("Response send too slow to %s: resetting the stream", self.connection.peer_text())
        self.closed = True
        if self.stream is not None:
            self.stream.feed_disconnect()
        self.connection.reset_stream(self.stream_id, ErrorCode.H3_REQUEST_CANCELLED)
