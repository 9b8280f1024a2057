"""HTTP/3 connections: one QUIC connection (aioquic), its HTTP/3 framing, one HTTPStream per request.

`Http3Connection` turns QUIC/HTTP/3 events into stream events and stream commands into HTTP/3
frames. It owns the HTTP/3 limits (field section size, concurrency, GOAWAY) and the send side's
backpressure; `stream.H3StreamTransport` is the per-stream `StreamTransport`, `framing` the H3
layer, `quic_connection.CreditQuicConnection` the receive credit.
The UDP socket, connection-ID routing and datagram batching live in `roadrunner.protocols.quic`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from aioquic.h3.connection import ErrorCode
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)

from roadrunner.asgi.scope import asgi_info, http_scope
from roadrunner.asgi.stream import HTTPStream
from roadrunner.logging import escape_control
from roadrunner.protocols.http3.framing import Headers, RoadrunnerH3Connection, StreamMalformed
from roadrunner.protocols.http3.quic_connection import CreditQuicConnection
from roadrunner.protocols.http3.stream import H3StreamTransport

if TYPE_CHECKING:
    from roadrunner.config import Config
    from roadrunner.server_state import ServerState

logger = logging.getLogger("roadrunner.error")

NetworkAddress = Any

# A response stream stops accepting app writes (drain() waits) while more than this many bytes
# wait to be sent for the first time, and resumes at half of it. Bytes in flight are bounded by
# the congestion window and the peer's credit, so memory per stream stays bounded; counting
# only unsent bytes lets the app refill the stream before the sender runs dry.
SEND_HIGH_WATER = 256 * 1024
ERROR_BODIES = {
    400: b"Invalid HTTP request received.",
    413: b"Request body too large.",
    431: b"Request header fields too large.",
    501: b"Not Implemented",
}


class Http3Connection:
    """One QUIC connection speaking HTTP/3; owned and fed datagrams by the UDP listener."""

    def __init__(
        self,
        quic: CreditQuicConnection,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        send: Callable[[list[tuple[bytes, NetworkAddress]]], None],
        on_cid_issued: Callable[[bytes, Http3Connection], None],
        on_cid_retired: Callable[[bytes], None],
        on_closed: Callable[[Http3Connection], None],
        on_terminated: Callable[[Http3Connection], None],
        server_address: tuple[str, int],
    ) -> None:
        if not config.loaded:
            config.load()
        self.quic = quic
        self.config = config
        self.app = config.loaded_app
        self.state = server_state
        self.app_state = app_state
        self.loop = loop
        self.send_datagrams = send
        self.on_cid_issued = on_cid_issued
        self.on_cid_retired = on_cid_retired
        self.on_closed = on_closed
        self.on_terminated = on_terminated
        self.server_address = server_address
        self.access_log = config.access_log
        self.h3: RoadrunnerH3Connection | None = None
        self.client: tuple[str, int] | None = None
        self.streams: dict[int, H3StreamTransport] = {}
        self.drain_waiters: dict[int, asyncio.Future[None]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None
        self.last_now = 0.0  # the latest time given to aioquic (see clock())
        self.transmit_scheduled = False
        self.goaway_id: int | None = None  # set once GOAWAY is sent (graceful shutdown)
        self.next_stream_id = 0  # lowest client bidi stream id not yet seen
        self.closed = False
        self.terminated = False
        server_state.connections.add(self)

    # -- datagrams and timers (called by the listener) ------------------------------------------

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        if self.client is None:
            self.client = (str(addr[0]), int(addr[1]))
        self.quic.receive_datagram(data, addr, now=self.clock())
        self.process_events()
        self.transmit()

    def clock(self) -> float:
        """aioquic's `now`: the monotonic clock at full resolution, never going backwards.

        Not `loop.time()`: uvloop's moves in whole milliseconds, so aioquic's pacer (RFC 9002
        §7.7), which refills its send budget from the time elapsed, got at most one burst per
        millisecond and the connection idled between them. Timers are armed with `call_later`
        from the same clock, so they do not inherit the loop clock's lag either.
        """
        now = monotonic()
        if now < self.last_now:
            now = self.last_now
        self.last_now = now
        return now

    def on_timer(self) -> None:
        due = self.timer_at
        self.timer = None
        self.timer_at = None
        try:
            now = self.clock()
            if due is not None and now < due:
                # The loop may run a timer up to half a millisecond early; it is due (aioquic's
                # own asyncio protocol does the same).
                now = self.last_now = due
            self.quic.handle_timer(now=now)
            self.process_events()
            self.transmit()
        except Exception as exc:  # one broken connection must not take the worker down
            self.internal_error(exc)

    def internal_error(self, exc: BaseException) -> None:
        """An unexpected failure while serving this connection: close it alone, log one line."""
        logger.warning("HTTP/3 connection from %s failed: %r", self.peer_text(), exc)
        if not self.terminated:
            self.quic.close(error_code=ErrorCode.H3_INTERNAL_ERROR, reason_phrase="internal error")
            self.transmit()
            self.connection_terminated()

    def transmit(self) -> None:
        """Send what aioquic has queued (one batch) and re-arm the connection's timer."""
        self.transmit_scheduled = False
        if self.terminated:
            return
        datagrams = self.quic.datagrams_to_send(now=self.clock())
        if datagrams:
            self.send_datagrams(datagrams)
        timer_at = self.quic.get_timer()
        if timer_at != self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = (
                self.loop.call_later(max(0.0, timer_at - self.last_now), self.on_timer)
                if timer_at is not None
                else None
            )
            self.timer_at = timer_at
        if self.drain_waiters:
            self.wake_drain_waiters()

    def schedule_transmit(self) -> None:
        """Coalesce the writes of one loop iteration into one batch of datagrams (GSO)."""
        if not self.transmit_scheduled:
            self.transmit_scheduled = True
            self.loop.call_soon(self.safe_transmit)

    def safe_transmit(self) -> None:
        try:
            self.transmit()
        except Exception as exc:
            self.internal_error(exc)

    # -- QUIC and HTTP/3 events -----------------------------------------------------------------

    def process_events(self) -> None:
        quic = self.quic
        while (event := quic.next_event()) is not None:
            self.quic_event(event)

    def quic_event(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            if event.alpn_protocol == "h3" and self.h3 is None:
                self.h3 = RoadrunnerH3Connection(
                    self.quic,
                    self.config.h3_qpack_max_table_capacity,
                    self.config.h3_qpack_blocked_streams,
                    self.config.h3_max_field_section_size,
                    enable_connect_protocol=self.config.ws != "none",
                )
            return
        if isinstance(event, ConnectionIdIssued):
            self.on_cid_issued(event.connection_id, self)
            return
        if isinstance(event, ConnectionIdRetired):
            self.on_cid_retired(event.connection_id)
            return
        if isinstance(event, ConnectionTerminated):
            self.connection_terminated()
            return
        h3 = self.h3
        if h3 is None:
            return
        if isinstance(event, (StreamReset, StopSendingReceived)):
            transport = self.streams.get(event.stream_id)
            if transport is not None:
                # RFC 9114 §4.1.1: the client cancelled this request; only this stream ends.
                transport.closed = True
                if transport.stream is not None:
                    transport.stream.feed_disconnect()
                # Reset our sending half too, or the QUIC stream never closes and the
                # client's stream credit is never returned.
                self.reset_stream(event.stream_id, ErrorCode.H3_REQUEST_CANCELLED)
                if isinstance(event, StreamReset):
                    h3.discarded.add(event.stream_id)
            elif isinstance(event, StreamReset) and h3.never_answered(event.stream_id):
                # RFC 9114 §4.1.1: reset before its head; aioquic 1.3 leaves our half open.
                h3.forget_unanswered(event.stream_id)
                self.schedule_transmit()
        elif isinstance(event, StreamDataReceived) and event.stream_id in h3.discarded:
            return
        for h3_event in h3.handle_event(event):
            self.h3_event(h3_event)

    def h3_event(self, event: H3Event) -> None:
        if isinstance(event, (HeadersReceived, DataReceived)) and self.h3 is not None and (
            event.stream_id in self.h3.discarded
        ):
            return  # e.g. a QPACK-blocked head resumed after its stream was reset
        if isinstance(event, HeadersReceived):
            transport = self.streams.get(event.stream_id)
            if transport is None:
                self.begin_request(event.stream_id, event.headers, event.stream_ended)
            elif event.stream_ended:
                # Request trailers (RFC 9114 §4.1): ASGI has no place for them; the body ends.
                self.end_request(transport)
        elif isinstance(event, DataReceived):
            transport = self.streams.get(event.stream_id)
            if transport is None or transport.stream is None:
                return
            if event.data:
                transport.received += len(event.data)
                limit = self.config.limit_request_body
                if limit is not None and transport.received > limit and isinstance(
                    transport.stream, HTTPStream
                ):  # a WebSocket's bytes are messages, limited by --ws-max-size
                    self.body_too_large(transport)
                    return
                self.quic.add_unconsumed(event.stream_id, len(event.data))
                transport.stream.feed_body(event.data)
            if event.stream_ended:
                self.end_request(transport)
        elif isinstance(event, StreamMalformed):
            logger.warning(
                "Invalid HTTP/3 request from %s: %s", self.peer_text(), escape_control(event.reason)
            )
            transport = self.streams.get(event.stream_id)
            if transport is not None:
                transport.closed = True
                if transport.stream is not None:
                    transport.stream.feed_disconnect()
                self.quic.release(event.stream_id)
            self.schedule_transmit()

    def end_request(self, transport: H3StreamTransport) -> None:
        transport.request_ended = True
        if transport.stream is not None:
            transport.stream.feed_end()

    # -- requests -----------------------------------------------------------------------------

    def begin_request(self, stream_id: int, headers: Headers, ended: bool) -> None:
        """A request head arrived: check the limits, build the scope, run the app."""
        h3 = self.h3
        assert h3 is not None
        self.next_stream_id = max(self.next_stream_id, stream_id + 4)
        if self.goaway_id is not None and stream_id >= self.goaway_id:
            # RFC 9114 §5.2: requests past the GOAWAY id were not processed; the client retries.
            h3.discard_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)
            return
        limit = self.config.limit_concurrency
        if limit is not None and len(self.state.tasks) >= limit:
            # RFC 9114 §4.1.1: H3_REQUEST_REJECTED tells the client it is safe to retry.
            logger.warning("Exceeded concurrency limit.")
            h3.discard_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)
            return
        transport = H3StreamTransport(self, stream_id)
        transport.request_ended = ended
        self.streams[stream_id] = transport
        pseudo: dict[bytes, bytes] = {}
        fields: Headers = []
        size = 0
        for name, value in headers:
            # RFC 9114 §4.2.2: field section size is name + value + 32 per field.
            size += len(name) + len(value) + 32
            if name.startswith(b":"):
                pseudo[name] = value
            else:
                fields.append((name, value))
        if size > self.config.h3_max_field_section_size or len(fields) > self.config.limit_request_fields:
            self.reject(transport, 431, "request header fields too large")
            return
        method = pseudo.get(b":method", b"")
        if b":protocol" in pseudo:
            if self.config.ws == "none":
                # RFC 9220 §3: :protocol without our SETTINGS_ENABLE_CONNECT_PROTOCOL is malformed.
                h3.discard_stream(stream_id, ErrorCode.H3_MESSAGE_ERROR)
                self.streams.pop(stream_id, None)
                logger.warning("Invalid HTTP/3 request from %s: :protocol is not enabled", self.peer_text())
                self.schedule_transmit()
                return
            from roadrunner.protocols.websocket import upgrade_h3

            upgrade_h3(self, transport, pseudo, fields)
            return
        if method == b"CONNECT":
            self.reject(transport, 501, "CONNECT is not supported")
            return
        path_value = pseudo.get(b":path")
        if not path_value or b":scheme" not in pseudo:
            # RFC 9114 §4.3.1: non-CONNECT requests carry :scheme and :path.
            h3.discard_stream(stream_id, ErrorCode.H3_MESSAGE_ERROR)
            self.streams.pop(stream_id, None)
            logger.warning("Invalid HTTP/3 request from %s: missing :scheme or :path", self.peer_text())
            self.schedule_transmit()
            return
        if b"host" not in {name for name, _ in fields} and b":authority" in pseudo:
            fields.insert(0, (b"host", pseudo[b":authority"]))
        content_length = next((v for n, v in fields if n == b"content-length"), None)
        limit_body = self.config.limit_request_body
        if limit_body is not None and content_length is not None and int(content_length) > limit_body:
            self.reject(transport, 413, "request body too large")
            return
        raw_path, _, query = path_value.partition(b"?")
        scope = http_scope(
            asgi=asgi_info(self.config.asgi_version), http_version="3",
            server=self.server_address, client=self.client,
            scheme=pseudo.get(b":scheme", b"https").decode("ascii", "replace"),
            method=method.decode("ascii", "replace"), root_path=self.config.root_path,
            raw_path=raw_path, query_string=query, headers=fields, app_state=self.app_state,
        )
        stream = HTTPStream(scope, transport, self.state, self.access_log, more_body=not ended)
        stream.wants_trailers = True  # RFC 9114 §4.1: trailers are always possible
        transport.stream = stream
        task = stream.task = self.state.start_task(self.loop, stream.run(self.app))
        task.add_done_callback(lambda _task: self.stream_done(transport))

    def body_too_large(self, transport: H3StreamTransport) -> None:
        """The body outgrew --limit-request-body: 413 if nothing was answered yet, else reset."""
        stream = transport.stream
        assert stream is not None
        stream.feed_disconnect()  # the app sees http.disconnect; its later sends are no-ops
        if stream.response_started or transport.closed:
            logger.warning("Invalid HTTP/3 request from %s: request body too large", self.peer_text())
            self.reset_stream(transport.stream_id, ErrorCode.H3_REQUEST_REJECTED)
            transport.closed = True
            self.finish_stream(transport)
        else:
            stream.response_started = True
            self.reject(transport, 413, "request body too large")

    def reject(self, transport: H3StreamTransport, status: int, reason: str) -> None:
        """Answer a request ourselves with an error status; the app never sees it."""
        logger.warning("Invalid HTTP/3 request from %s: %s", self.peer_text(), reason)
        body = ERROR_BODIES.get(status, b"Error")
        transport.write_head(
            status,
            [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))],
            False,
        )
        transport.write_body(body, True)
        self.finish_stream(transport)

    # -- stream commands (from H3StreamTransport) ------------------------------------------------

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        if self.h3 is not None and not self.terminated:
            self.h3.send_headers(stream_id, headers, end_stream)
            self.schedule_transmit()

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        if self.h3 is not None and not self.terminated:
            self.h3.send_informational(stream_id, headers)
            self.schedule_transmit()

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if self.h3 is not None and not self.terminated:
            self.h3.send_data(stream_id, data, end_stream)
            self.schedule_transmit()

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        if self.h3 is not None and not self.terminated:
            self.h3.discard_stream(stream_id, error_code)
            self.quic.release(stream_id)
            self.release_drain(stream_id)
            self.schedule_transmit()

    def body_consumed(self, stream_id: int, nbytes: int) -> None:
        self.quic.consume(stream_id, nbytes)
        self.schedule_transmit()  # may carry MAX_STREAM_DATA / MAX_DATA

    async def drain(self, transport: H3StreamTransport) -> None:
        """Wait while the stream holds more unsent data than SEND_HIGH_WATER."""
        while not transport.closed and not self.terminated and (
            self.quic.send_queued(transport.stream_id) > SEND_HIGH_WATER
        ):
            if isinstance(transport.stream, HTTPStream):  # a WebSocket has its own ping timeout
                self.state.send_pace.watch(transport)
            waiter = self.drain_waiters.get(transport.stream_id)
            if waiter is None:
                waiter = self.drain_waiters[transport.stream_id] = self.loop.create_future()
            await waiter

    def wake_drain_waiters(self) -> None:
        for stream_id, waiter in list(self.drain_waiters.items()):
            if self.quic.send_queued(stream_id) <= SEND_HIGH_WATER // 2:
                self.release_drain(stream_id)
            elif waiter.done():
                del self.drain_waiters[stream_id]

    def release_drain(self, stream_id: int) -> None:
        waiter = self.drain_waiters.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def response_complete(self, transport: H3StreamTransport) -> None:
        self.state.requests_done += 1
        if self.quic.send_queued(transport.stream_id):
            self.state.send_pace.watch(transport)  # the rest waits on the client
        self.finish_stream(transport)

    def finish_stream(self, transport: H3StreamTransport) -> None:
        """The response is complete: stop reading an unfinished request body (RFC 9114 §4.1)."""
        if not transport.request_ended and self.h3 is not None and not self.terminated:
            transport.request_ended = True
            if transport.stream_id in self.quic._streams:
                self.quic.stop_stream(transport.stream_id, ErrorCode.H3_NO_ERROR)
            self.h3.discarded.add(transport.stream_id)
            self.schedule_transmit()
        self.quic.release(transport.stream_id)
        if transport.stream is None or transport.stream.task is None or transport.stream.task.done():
            self.stream_done(transport)

    def stream_done(self, transport: H3StreamTransport) -> None:
        """The stream's app task ended: forget the stream; close when draining and idle."""
        if self.streams.get(transport.stream_id) is transport:
            del self.streams[transport.stream_id]
        self.quic.release(transport.stream_id)
        self.release_drain(transport.stream_id)
        if self.goaway_id is not None and not self.streams:
            self.close("server shutdown")

    # -- connection lifetime --------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY, finish the streams in flight, then close (RFC 9114 §5.2)."""
        if self.closed or self.terminated:
            return
        if self.h3 is None:
            self.close("server shutdown")
            return
        if self.goaway_id is None:
            self.goaway_id = self.next_stream_id
            self.h3.send_goaway(self.goaway_id)
            for transport in list(self.streams.values()):
                if transport.stream is not None and not isinstance(transport.stream, HTTPStream):
                    transport.stream.server_shutdown()  # a WebSocket (RFC 9220) closes with 1012
            self.schedule_transmit()
        if not self.streams:
            self.close("server shutdown")

    def close(self, reason: str) -> None:
        """Close with H3_NO_ERROR; the listener keeps routing its packets while it drains."""
        if self.closed or self.terminated:
            return
        self.closed = True
        self.quic.close(error_code=ErrorCode.H3_NO_ERROR, reason_phrase=reason)
        self.transmit()
        self.state.connections.discard(self)
        self.on_closed(self)

    @property
    def transport(self) -> Http3Connection:
        """The server aborts `connection.transport` after the graceful timeout: that is us."""
        return self

    def abort(self) -> None:
        self.close("server shutdown timed out")
        self.connection_terminated()

    def connection_terminated(self) -> None:
        """The QUIC connection is gone (closed, idle timeout, peer close): end every stream."""
        if self.terminated:
            return
        self.terminated = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for transport in list(self.streams.values()):
            transport.closed = True
            if transport.stream is not None:
                transport.stream.feed_disconnect()
        for stream_id in list(self.drain_waiters):
            self.release_drain(stream_id)
        self.state.connections.discard(self)
        if not self.closed:
            self.closed = True
            self.on_closed(self)
        self.on_terminated(self)

    def peer_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown peer"
