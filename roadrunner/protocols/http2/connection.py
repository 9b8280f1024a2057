"""HTTP/2 connections (RFC 9113) over an engine (engine.H2Engine), bridged to the HTTPStream.

`Http2Connection` owns flow control, settings, limits and flood guards for one connection on
either engine (the engine frames and tracks stream states); `stream.H2StreamTransport` is the per-stream `StreamTransport`
the shared `HTTPStream` writes through, so the ASGI side is the same code as HTTP/1.1 and
HTTP/3.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

import h2.events as ev
from h2.errors import ErrorCodes
from h2.exceptions import (
    DenialOfServiceError,
    FlowControlError,
    ProtocolError,
    StreamClosedError,
)
from h2.settings import SettingCodes

from roadrunner.asgi.scope import asgi_info
from roadrunner.asgi.stream import HTTPStream
from roadrunner.protocols.http2.engine import new_state
from roadrunner.protocols.http2.guards import HeaderBlockTooLarge, RateGuard, guard_counters
from roadrunner.protocols.http2.lifetime import ConnectionLifetime
from roadrunner.protocols.http2.rules import STATUS, Headers, Malformed, build_scope, check_trailers
from roadrunner.protocols.http2.stream import H2StreamTransport
from roadrunner.protocols.tcp import describe_peer, reset_transport, send_wait, transport_addresses

if TYPE_CHECKING:
    from roadrunner.config import Config
    from roadrunner.server_state import ServerState

logger = logging.getLogger("roadrunner.error")

# Encoded DATA bytes held in the engine's outbound buffer before they are written out at once.
FLUSH_HIGH_WATER: Final = 65536


class Http2Connection(ConnectionLifetime, asyncio.BufferedProtocol):
    """One HTTP/2 connection: h2 events in, HTTPStreams out, with limits and flood guards."""

    # Slots, not a __dict__: an idle connection holds this object (and its engine) for its life.
    __slots__ = (
        "config", "app", "state", "app_state", "loop", "access_log", "root_path", "asgi_info",
        "h2", "streams", "transport", "client", "server", "scheme", "write_paused", "read_paused",
        "dead", "last_stream_id", "flush_handle", "unflushed", "held_heads", "deferred", "resets",
        "pings", "settings", "empty_frames", "upgrade_stream", "upgrade_body_left", "upgrade_head",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.access_log = config.access_log
        self.root_path = config.root_path
        self.asgi_info = asgi_info(config.asgi_version)
        self.h2 = new_state(config)
        self.streams = {}
        self.transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.scheme = "https"
        self.write_paused = False
        self.read_paused = False
        self.goaway_sent = False
        self.dead = False
        self.last_stream_id = 0
        self.flush_handle: asyncio.Handle | None = None
        self.unflushed = 0  # DATA bytes queued in h2 since the last flush
        self.written = 0  # bytes handed to the transport (the response-send pace guard)
        self.held_heads: list[H2StreamTransport] = []  # see H2StreamTransport.write_head
        self.deferred: list[H2StreamTransport] = []  # see H2StreamTransport.write_body
        self.preface_timer = None
        self.idle_timer = None
        self.idle_since = 0.0  # loop time the connection last became idle (no streams)
        self.resets = RateGuard(config.h2_max_reset_rate)
        self.pings = RateGuard(config.h2_max_ping_rate)
        self.settings = RateGuard(config.h2_max_settings_rate)
        self.empty_frames = RateGuard(config.h2_max_empty_frame_rate)
        # h2c upgrade (RFC 7540 §3.2): the upgrading request's body precedes the preface.
        self.upgrade_stream: H2StreamTransport | None = None
        self.upgrade_body_left = 0
        self.upgrade_head = b""  # the 101 of an h2c upgrade, held until its body is in

    # -- asyncio.BufferedProtocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        self.client, self.server, self.scheme = transport_addresses(transport)
        if self.upgrade_stream is None:
            self.h2.initiate_connection()
        self.open_connection_window()
        if not self.upgrade_body_left:
            self.start_http2()
        if self.state.draining:
            # Set up after shutdown began (adopted from the accept queue, or sniffed late): the
            # requests already in the first bytes are served, then GOAWAY names the last one.
            self.loop.call_soon(self.shutdown)

    def start_http2(self) -> None:
        """Send our preface (after the 101 of an upgrade) and wait for the client's."""
        self.flush()
        # Slow-handshake guard: the client's connection preface must arrive in time (§3.4).
        self.preface_timer = self.loop.call_later(
            self.config.timeout_request_header, self.on_preface_timeout
        )
        stream = self.upgrade_stream
        if stream is not None and stream.http is not None and stream.http.task is None:
            self.start_app(stream.http)

    def open_connection_window(self) -> None:
        # RFC 9113 §6.9.2: the connection window starts at 65535 and grows only by WINDOW_UPDATE.
        extra = self.config.h2_connection_window_size - 65535
        if extra > 0:
            self.h2.increment_flow_control_window(extra)

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self.state.connections.discard(self)
        self.cancel_timers()
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        for stream in list(self.streams.values()):
            self.drop(stream)
        self.streams.clear()

    def pause_writing(self) -> None:
        # The client is not reading: stop reading its frames too, so PING/SETTINGS acks and
        # responses cannot pile up in our write buffer.
        self.write_paused = True
        self.state.send_pace.watch(self)  # every stream now waits on the client's TCP reads
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        for stream in list(self.streams.values()):
            stream.wake()

    def eof_received(self) -> bool | None:
        return None

    # A buffered protocol: reads land in the server's one buffer (tcp.reads_by_data_received;
    # PlainReadsHttp2Connection takes them by data_received instead).
    def get_buffer(self, sizehint: int) -> memoryview:
        return self.state.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.state.read_buffer[:nbytes].tobytes())

    # -- receiving ------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        if self.upgrade_body_left:
            data = self.take_upgrade_body(data)
            if not data:
                return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            self.on_protocol_error(exc)
            return
        if self.h2.closed:
            # The client's GOAWAY came in this read: h2 now refuses every frame we could send
            # (RST_STREAM included), so no request read with it can be answered.
            self.on_goaway_received()
            return
        for event in events:
            if self.dead:
                return
            kind = type(event)
            if kind is ev.DataReceived:
                self.on_data(event)  # type: ignore[arg-type]
            elif kind is ev.RequestReceived:
                self.on_request(event)  # type: ignore[arg-type]
            elif kind is ev.StreamEnded:
                stream = self.streams.get(event.stream_id)  # type: ignore[attr-defined]
                if stream is not None:
                    self.request_end(stream)
            elif kind is ev.WindowUpdated:
                self.on_window_updated(event.stream_id)  # type: ignore[attr-defined]
            elif kind is ev.TrailersReceived:
                self.on_trailers(event)  # type: ignore[arg-type]
            elif kind is ev.StreamReset:
                self.on_reset(event)  # type: ignore[arg-type]
            elif kind is ev.RemoteSettingsChanged:
                self.on_settings(event)  # type: ignore[arg-type]
            elif kind is ev.PingReceived:
                if self.pings.hit():
                    self.calm("ping_flood", "PING flood")
            elif kind is ev.ConnectionTerminated:
                self.on_goaway_received()
            elif kind is ev.SettingsAcknowledged:
                self.h2.settings_acknowledged()
        self.flush()

    def take_upgrade_body(self, data: bytes) -> bytes:
        """Feed the h2c upgrade request's HTTP/1.1 body to stream 1; return what follows it."""
        stream = self.upgrade_stream
        assert stream is not None and stream.http is not None
        body, rest = data[: self.upgrade_body_left], data[self.upgrade_body_left :]
        self.upgrade_body_left -= len(body)
        stream.http.feed_body(body)
        if not self.upgrade_body_left:
            self.request_end(stream)
            self.start_http2()  # RFC 7540 §3.2: the whole body is in, the client's frames follow
        return rest

    def request_end(self, stream: H2StreamTransport) -> None:
        stream.request_ended = True
        if stream.http is not None:
            stream.http.feed_end()
        if stream.end_sent:
            self.maybe_finish(stream)  # the response was out first: the stream is done now

    def on_protocol_error(self, exc: ProtocolError) -> None:
        """h2 queued GOAWAY with the right code: send it, log one line, close."""
        if isinstance(exc, DenialOfServiceError) and not isinstance(exc, HeaderBlockTooLarge):
            guard_counters["header_list"] += 1
        elif isinstance(exc, FlowControlError):
            guard_counters["flow_control"] += 1
        logger.info("HTTP/2 connection error from %s: %s", self.peer_text(), exc)
        self.close(None)

    def on_request(self, event: ev.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.preface_timer is not None:
            self.preface_timer.cancel()
            self.preface_timer = None
        # The idle timer is left running: on_idle sees the open stream (see arm_idle_timer).
        try:
            scope, status, wants_trailers, expect_continue = build_scope(self, event.headers)
        except Malformed as exc:
            # RFC 9113 §8.1.1: a malformed request is a stream error; the connection serves on.
            guard_counters["malformed"] += 1
            logger.info("Malformed HTTP/2 request on stream %d: %s", stream_id, exc)
            self.refuse(stream_id, ErrorCodes.PROTOCOL_ERROR)
            self.arm_idle_timer()
            return
        limit = self.config.limit_concurrency
        if self.goaway_sent:
            self.refuse(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        if len(self.streams) >= self.config.h2_max_concurrent_streams or (
            limit is not None and len(self.state.tasks) >= limit
        ):
            # RFC 9113 §5.1.2: past the advertised limit (or the server's), refuse the stream.
            guard_counters["refused_stream"] += 1
            self.refuse(stream_id, ErrorCodes.REFUSED_STREAM)
            self.arm_idle_timer()
            return
        self.last_stream_id = stream_id
        stream = H2StreamTransport(self, stream_id)
        self.streams[stream_id] = stream
        request_ended = stream.request_ended = event.stream_ended is not None
        if scope is None:
            from roadrunner.protocols.websocket import upgrade_h2

            upgrade_h2(self, stream, event.headers)
            return
        if status:
            guard_counters[f"status_{status}"] += 1
            self.send_headers(stream, [(b":status", STATUS[status]), (b"content-length", b"0")], True)
            stream.end_sent = True
            self.maybe_finish(stream)
            return
        http = HTTPStream(
            scope, stream, self.state, self.access_log, expect_continue and not request_ended,
            not request_ended,
        )
        http.wants_trailers = wants_trailers
        stream.http = http
        self.start_app(http)

    def refuse(self, stream_id: int, code: ErrorCodes) -> None:
        """Reset a request that gets no stream transport; the client may have reset it already,
        later in the same read (RFC 9113 §5.4.2: never an RST_STREAM for an RST_STREAM)."""
        try:
            self.h2.reset_stream(stream_id, code)
        except StreamClosedError:
            pass

    def start_app(self, http: HTTPStream) -> None:
        app = self.app
        state = self.state
        soft = self.config.limit_concurrency_soft
        if soft is not None and len(state.tasks) >= soft:
            logger.warning("Exceeded concurrency limit.")
            app = self.service_unavailable
        http.task = state.start_task(self.loop, http.run(app))

    async def service_unavailable(self, scope: Any, receive: Any, send: Any) -> None:
        """Load shedding: 503 with Retry-After (RFC 9110 §15.6.4)."""
        await send({
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"retry-after", str(self.config.retry_after).encode())],
        })
        await send({"type": "http.response.body", "body": b"Service Unavailable"})

    def on_data(self, event: ev.DataReceived) -> None:
        data = event.data
        stream = self.streams.get(event.stream_id)
        padding = event.flow_controlled_length - len(data)
        if not data and event.stream_ended is None and self.empty_frames.hit():
            self.calm("empty_frames", "empty DATA frame flood")
            return
        if stream is None or stream.http is None or stream.closed or stream.answered:
            # Not ours to deliver (refused, answered, reset): give the window straight back.
            self.acknowledge(event.stream_id, event.flow_controlled_length)
            if stream is not None and stream.answered:
                stream.received += len(data)
                if stream.received > self.config.h2_initial_window_size:
                    self.reset(stream, ErrorCodes.NO_ERROR)  # see maybe_finish
            return
        if padding:
            self.acknowledge(event.stream_id, padding)
        limit = self.config.limit_request_body
        stream.received += len(data)
        if limit is not None and stream.received > limit and isinstance(stream.http, HTTPStream):
            guard_counters["body_limit"] += 1
            if not stream.http.response_started:
                stream.http.response_started = True
                self.send_headers(stream, [(b":status", b"413"), (b"content-length", b"0")], True)
                stream.end_sent = True
            self.reset(stream, ErrorCodes.NO_ERROR)
            return
        if data:
            stream.unacked += len(data)
            stream.http.feed_body(data)

    def on_trailers(self, event: ev.TrailersReceived) -> None:
        try:
            check_trailers(event.headers)
        except Malformed as exc:
            # RFC 9113 §8.1: a malformed trailer section is a stream error.
            guard_counters["malformed"] += 1
            logger.info("Malformed HTTP/2 trailers on stream %d: %s", event.stream_id, exc)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self.reset(stream, ErrorCodes.PROTOCOL_ERROR)
            else:
                try:
                    self.h2.reset_stream(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
                except (StreamClosedError, ProtocolError):
                    pass

    def on_window_updated(self, stream_id: int) -> None:
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None:
                self.push(stream)
        else:
            for stream in list(self.streams.values()):
                if stream.pending or stream.pending_end:
                    self.push(stream)

    def on_reset(self, event: ev.StreamReset) -> None:
        if event.remote_reset and self.resets.hit():
            # CVE-2023-44487 (rapid reset): streams opened and cancelled faster than allowed.
            self.calm("rapid_reset", "rapid reset")
            return
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.closed = True
            self.drop(stream)

    def on_settings(self, event: ev.RemoteSettingsChanged) -> None:
        if self.preface_timer is not None:
            # RFC 9113 §3.4: the client's first SETTINGS completes its connection preface.
            self.preface_timer.cancel()
            self.preface_timer = None
            if not self.streams:
                self.arm_idle_timer()
        if self.settings.hit():
            self.calm("settings_flood", "SETTINGS flood")
            return
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self.on_window_updated(0)

    def on_goaway_received(self) -> None:
        # The client is leaving: h2 accepts nothing more on this connection, so we go too.
        self.close(None)

    # -- guards and closing ---------------------------------------------------------------------------

    def calm(self, guard: str, reason: str) -> None:
        """Flood detected: GOAWAY(ENHANCE_YOUR_CALM), cancel everything, close."""
        guard_counters[guard] += 1
        logger.warning("HTTP/2 %s from %s: closing the connection", reason, self.peer_text())
        self.close(ErrorCodes.ENHANCE_YOUR_CALM)

    def close(self, error_code: ErrorCodes | None) -> None:
        """Send GOAWAY (unless h2 already queued one), flush, and close the connection."""
        if self.dead:
            return
        if error_code is not None:
            self.h2.close_connection(error_code, last_stream_id=self.last_stream_id)
        self.dead = True
        self.flush()
        self.cancel_timers()
        for stream in list(self.streams.values()):
            self.drop(stream)
        self.streams.clear()
        if self.transport.get_write_buffer_size():
            self.state.send_pace.watch(self)  # the close waits for a client that may not read
        self.transport.close()

    def pace_probe(self) -> tuple[bool, int] | None:
        """Response-send guard for the TCP transport: a stall there stalls every stream."""
        return send_wait(self.transport, self.written)

    def pace_trip(self) -> None:
        """The client reads nothing on any stream: GOAWAY(NO_ERROR), as on the other timeouts,
        then a reset; the streams' apps see http.disconnect."""
        logger.info("HTTP/2 response send too slow to %s: closing the connection", self.peer_text())
        guard_counters["send_timeout"] += 1
        self.close(ErrorCodes.NO_ERROR)
        reset_transport(self.transport)

    def peer_text(self) -> str:
        return describe_peer(self.client)

    # -- sending --------------------------------------------------------------------------------------

    def send_headers(self, stream: H2StreamTransport, headers: Headers, end_stream: bool) -> None:
        try:
            self.h2.send_headers(stream.stream_id, headers, end_stream=end_stream)
        except (StreamClosedError, ProtocolError):
            # h2 already reset the stream (a stream error found while receiving).
            stream.closed = True
            self.drop(stream)
            return
        self.schedule_flush()

    def push(self, stream: H2StreamTransport) -> None:
        """Send as much pending body as the flow-control windows allow, then trailers / end."""
        stream.deferred = False
        if stream.closed or stream.end_sent:
            return
        h2 = self.h2
        stream_id = stream.stream_id
        pending = stream.pending
        try:
            while pending:
                size = min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size,
                           len(pending))
                if size <= 0:
                    break
                last = size == len(pending) and stream.pending_end and stream.pending_trailers is None
                h2.send_data(stream_id, bytes(pending[:size]), end_stream=last)
                del pending[:size]
                self.unflushed += size
                stream.sent += size
                if last:
                    stream.end_sent = True
            if not pending and stream.pending_end and not stream.end_sent:
                if stream.pending_trailers is not None:
                    h2.send_headers(stream_id, stream.pending_trailers, end_stream=True)
                else:
                    h2.end_stream(stream_id)
                stream.end_sent = True
        except (StreamClosedError, ProtocolError):
            stream.closed = True
            self.drop(stream)
        if self.unflushed >= FLUSH_HIGH_WATER:
            # Bytes reach the socket as they are produced, so the transport's high-water mark
            # (pause_writing) holds the app back instead of h2's unbounded outbound buffer.
            self.flush()
        else:
            self.schedule_flush()
        if not pending:
            stream.wake()
        elif not stream.closed:
            self.state.send_pace.watch(stream)  # the rest waits for the client's WINDOW_UPDATE
        if stream.end_sent:
            self.maybe_finish(stream)

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        if nbytes and not self.dead:
            try:
                self.h2.acknowledge_received_data(nbytes, stream_id)
            except (StreamClosedError, ProtocolError):
                return
            self.schedule_flush()

    def reset(self, stream: H2StreamTransport, code: ErrorCodes) -> None:
        if not stream.closed and not self.dead:
            try:
                self.h2.reset_stream(stream.stream_id, code)
            except (StreamClosedError, ProtocolError):
                pass
            self.schedule_flush()
        stream.closed = True
        self.drop(stream)

    def maybe_finish(self, stream: H2StreamTransport) -> None:
        """Retire a stream once its response is out and its request is over (or cut short)."""
        http = stream.http
        if not stream.end_sent and not stream.closed:
            return
        if http is not None and not http.response_complete and not stream.closed:
            return
        if not stream.request_ended and not stream.closed:
            # RFC 9113 §8.1: a complete response may end a request still uploading with
            # RST_STREAM(NO_ERROR). Until then the stream is half-closed (local) (§5.1), and the
            # client's frames keep their rules (content-length, WINDOW_UPDATE, trailers) however
            # early the app answered: the stream stays until the request ends, its body is
            # discarded, and only an upload past one stream window is cut short.
            if stream.received > self.config.h2_initial_window_size:
                self.reset(stream, ErrorCodes.NO_ERROR)
            elif not stream.answered:
                stream.answered = True
                if stream.unacked:  # body the app left unread: the client may send the rest
                    self.acknowledge(stream.stream_id, stream.unacked)
                    stream.unacked = 0
            return
        self.drop(stream)

    def drop(self, stream: H2StreamTransport) -> None:
        """Forget a stream: the app sees http.disconnect if it is still running."""
        if self.streams.pop(stream.stream_id, None) is None and not self.dead:
            return
        if stream.unacked and not self.dead:
            # Body the app never read still holds connection window: return it.
            self.acknowledge(stream.stream_id, stream.unacked)
            stream.unacked = 0
        http = stream.http
        stream.wake()
        if http is not None and not http.response_complete:
            stream.closed = True
            http.feed_disconnect()
            task = http.task
            if task is not None and not task.done():
                # Let the app see http.disconnect, then cancel it at its next await.
                self.loop.call_soon(task.cancel)
        if not self.streams and not self.dead:
            if self.goaway_sent:
                self.flush()
                self.close(None)
            else:
                self.arm_idle_timer()

    def schedule_flush(self) -> None:
        # Coalesce the frames of one loop iteration (head + body, many streams) into one write.
        if self.flush_handle is None and not self.dead:
            self.flush_handle = self.loop.call_soon(self.flush)

    def cancel_flush(self) -> None:
        handle = self.flush_handle
        if handle is not None:
            handle.cancel()  # a no-op when flush() is that handle
            self.flush_handle = None

    def flush(self) -> None:
        self.cancel_flush()
        if self.upgrade_head:  # no HTTP/2 byte leaves before the 101
            head, self.upgrade_head = self.upgrade_head, b""
            self.written += len(head)
            self.transport.write(head)
        if self.held_heads:
            for stream in self.held_heads:
                stream.send_head()
            self.held_heads.clear()
        if self.deferred:
            streams, self.deferred = self.deferred, []
            for stream in streams:
                if stream.deferred:
                    self.push(stream)
            # push() may have scheduled a flush: this one writes it all. (A method, not an
            # inline test: mypy, and so mypyc, would take flush_handle to be still None here.)
            self.cancel_flush()
        self.unflushed = 0
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.written += len(data)
            self.transport.write(data)


class PlainReadsHttp2Connection(Http2Connection, asyncio.Protocol):
    """Http2Connection taking reads by data_received: uvloop's plaintext transport (uvloop
    treats an asyncio.Protocol as one; see tcp.reads_by_data_received)."""

    __slots__ = ()
