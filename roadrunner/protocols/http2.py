"""HTTP/2 connections (RFC 9113) over the h2 state machine, bridged to the shared HTTPStream.

`Http2Connection` owns framing, flow control, settings, limits and flood guards for one
connection; `H2StreamTransport` is the per-stream `StreamTransport` the shared `HTTPStream`
writes through, so the ASGI side is the same code as HTTP/1.1 and HTTP/3.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import h2.events as ev
import hpack.hpack
import hpack.table
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import (
    DenialOfServiceError,
    FlowControlError,
    FrameTooLargeError,
    ProtocolError,
    StreamClosedError,
    StreamIDTooLowError,
)
from h2.frame_buffer import CONTINUATION_BACKLOG, FrameBuffer
from h2.settings import SettingCodes
from h2.stream import H2Stream
from h2.utilities import HeaderValidationFlags
from hpack import Decoder, Encoder, HPACKError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    WindowUpdateFrame,
)

from roadrunner.asgi.scope import asgi_info, http_scope
from roadrunner.asgi.stream import HTTPStream
from roadrunner.protocols.h2engine import (
    HeaderBlockTooLarge,
    engine_name,
    local_settings,
    new_nghttp2_state,
)

if TYPE_CHECKING:
    from roadrunner.config import Config
    from roadrunner.protocols.http1 import H1Connection
    from roadrunner.server import ServerState

logger = logging.getLogger("roadrunner.error")

Headers = list[tuple[bytes, bytes]]

# Times each guard fired, by name: a cheap metric and what the tests read.
guard_counters: Counter[str] = Counter()

# RFC 9113 §8.2.2: connection-specific fields must not appear in HTTP/2 responses either.
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
# Decoded header lists above this many times the advertised limit are treated as an HPACK bomb:
# the whole connection goes (ENHANCE_YOUR_CALM) instead of a 431 for the stream.
HEADER_BOMB_FACTOR = 4
# Encoded DATA bytes held in h2's outbound buffer before they are written out at once.
FLUSH_HIGH_WATER = 65536
# Body chunks of one stream up to this many bytes wait for the end of the loop pass and leave
# as one DATA frame (16,384: the smallest SETTINGS_MAX_FRAME_SIZE, RFC 9113 §6.5.2), instead of a
# frame (9 bytes of header, RFC 9113 §4.1) per ASGI send: a gRPC stream of small messages.
COALESCE_LIMIT = 16384
STATUS = {status: str(status).encode() for status in range(100, 600)}

# -- request header checks (h2's own inbound validation is off: one pass here is cheaper) --------

# RFC 9113 §8.2.1: a field name is visible ASCII (0x21-0x7e) without uppercase letters, and has
# no ':' past the first byte (only pseudo-header names start with one, and those are checked
# against REQUEST_PSEUDO instead).
BAD_NAME = re.compile(rb"[^\x21-\x39\x3b-\x40\x5b-\x7e]").search
# RFC 9113 §8.2.1: a field value has no NUL, CR or LF, and no leading or trailing SP / HTAB.
BAD_VALUE = re.compile(rb"[\x00\n\r]|\A[ \t]|[ \t]\Z").search
# RFC 9113 §8.3.1 and RFC 8441 §4: the request pseudo-headers (:status is response-only).
REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
# Regular fields that need more than appending: §8.2.2 connection-specific fields and TE, the
# Host / :authority pair (§8.3.1), cookies to join (§8.2.3), and what the server reads itself.
SPECIAL_FIELDS = HOP_BY_HOP | frozenset(
    (b"te", b"host", b"cookie", b"content-length", b"expect")
)


class Malformed(Exception):
    """A malformed request (RFC 9113 §8.1.1): a stream error of type PROTOCOL_ERROR."""


def check_trailers(headers: Headers) -> None:
    """Raise Malformed unless the trailer section is well formed (RFC 9113 §8.1, §8.2)."""
    for name, value in headers:
        if not name or name[0] == 58:  # b":"
            raise Malformed("pseudo-header or empty name in trailers")  # §8.1
        if BAD_NAME(name) or BAD_VALUE(value):
            raise Malformed(f"invalid trailer field {name!r}")  # §8.2.1
        if name in HOP_BY_HOP or (name == b"te" and value.lower() != b"trailers"):
            raise Malformed(f"connection-specific trailer field {name!r}")  # §8.2.2


# -- h2 hardening: small subclasses that turn h2's defaults into our limits ---------------------


class CappedFrameBuffer(FrameBuffer):
    """Caps the encoded HEADERS+CONTINUATION block (CONTINUATION flood, CVE-2024-27316)."""

    def __init__(self, block_limit: int) -> None:
        super().__init__(server=True)
        self.block_limit = block_limit

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        pending = self._headers_buffer
        if isinstance(f, HeadersFrame | ContinuationFrame):
            size = len(f.data)
            if pending:
                size += sum(len(frame.data) for frame in pending)
            if size > self.block_limit or len(pending) >= CONTINUATION_BACKLOG:
                guard_counters["header_block"] += 1
                raise HeaderBlockTooLarge("header block exceeds the limit")
        return super()._update_header_buffer(f)

    def __next__(self) -> Frame:
        data = self._data
        if len(data) >= 9 and data[3] == 0x4 and data[4] & 0x1 and (data[0] or data[1] or data[2]):
            # RFC 9113 §6.5: a SETTINGS ACK with a payload is a FRAME_SIZE_ERROR.
            raise FrameTooLargeError("SETTINGS ACK with a payload")
        if len(data) >= 13 and data[3] == 0x8 and data[2] == 4 and data[5:9] != b"\0\0\0\0" and (
            data[9:13] == b"\0\0\0\0"
        ):
            # RFC 9113 §6.9: a zero increment on a stream is a stream error, which hyperframe
            # cannot express: hand it on unvalidated for ServerH2Connection to reset.
            frame = WindowUpdateFrame(int.from_bytes(data[5:9], "big") & 0x7FFFFFFF)
            del data[:13]
            return frame
        return super().__next__()


class CappedDecoder(Decoder):
    """An HPACK decoder whose header list cap is ours, not the value h2 copies from SETTINGS."""

    def __init__(self, cap: int, table_size: int) -> None:
        self.cap = cap
        super().__init__(max_header_list_size=cap)
        self.max_allowed_table_size = table_size

    @property  # type: ignore[override]
    def max_header_list_size(self) -> int:
        return self.cap

    @max_header_list_size.setter
    def max_header_list_size(self, value: int) -> None:
        pass


class CappedEncoder(Encoder):
    """An HPACK encoder whose dynamic table never exceeds our cap (RFC 7541 §4.2)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        super().__init__()

    @property  # type: ignore[override]
    def header_table_size(self) -> int:
        return int(Encoder.header_table_size.fget(self))  # type: ignore[attr-defined]

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        Encoder.header_table_size.fset(self, min(value, self.cap))  # type: ignore[attr-defined]


# h2 forgets closed streams while counting open ones: we let this many streams (about 0.5 KiB
# each) accumulate before a sweep.
STREAM_SWEEP = 8
NO_VALIDATION = HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
)


class ServerH2Stream(H2Stream):
    """h2's stream without the per-header-block work that only h2's header validation uses."""

    def _build_hdr_validation_flags(self, events: Any) -> HeaderValidationFlags:
        # Read only by h2's validation and normalization, which new_h2_state turns off.
        return NO_VALIDATION

    def _process_received_headers(
        self, headers: Any, header_validation_flags: Any, header_encoding: Any
    ) -> list[tuple[bytes, bytes]]:
        # With validation, normalization and decoding off, h2 would only copy the list.
        return headers if type(headers) is list else list(headers)


class ServerH2Connection(H2Connection):
    """h2's connection with RFC 9113 stream errors where h2 would tear the connection down."""

    def __init__(self, config: H2Configuration, max_closed_streams: int) -> None:
        # h2 remembers how each closed stream ended, for up to MAX_CLOSED_STREAMS (65,536) per
        # connection: ~130 bytes a stream for a long-lived connection's whole life. RFC 9113
        # §5.1 needs it only while frames sent before our RST_STREAM can still arrive, and a
        # compliant peer has at most MAX_CONCURRENT_STREAMS streams open meanwhile.
        self.MAX_CLOSED_STREAMS = max_closed_streams
        super().__init__(config)

    @property
    def closed(self) -> bool:
        """A GOAWAY was received or sent (the engine interface's name for h2's CLOSED state)."""
        return self.state_machine.state is ConnectionState.CLOSED

    @property
    def open_inbound_streams(self) -> int:
        # h2 would answer a stream past SETTINGS_MAX_CONCURRENT_STREAMS with a connection error;
        # Http2Connection refuses it with REFUSED_STREAM instead (RFC 9113 §5.1.2). h2's count
        # also forgets closed streams (a walk over all of them): that runs once some accumulate.
        if len(self.streams) > STREAM_SWEEP:
            H2Connection.open_inbound_streams.fget(self)  # type: ignore[attr-defined]
        return 0

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = ServerH2Stream
        return stream

    def _receive_frame(self, frame: Frame) -> list[ev.Event]:
        if type(frame) is WindowUpdateFrame and frame.stream_id and not frame.window_increment:
            stream = self.streams.get(frame.stream_id)
            if stream is None and frame.stream_id > self.highest_inbound_stream_id:
                raise ProtocolError("zero WINDOW_UPDATE on an idle stream")  # §5.1
            if stream is None or stream.closed:
                return []  # §6.9: WINDOW_UPDATE on a closed stream is ignored
            guard_counters["malformed"] += 1
            self.reset_stream(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
            return [ev.StreamReset(
                stream_id=frame.stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False
            )]
        try:
            return super()._receive_frame(frame)
        except (DenialOfServiceError, FlowControlError, FrameTooLargeError, StreamIDTooLowError,
                StreamClosedError):
            raise
        except ProtocolError as exc:
            if isinstance(exc.__cause__, HPACKError | IndexError | TypeError | UnicodeDecodeError):
                # RFC 9113 §4.3: a header block that cannot be decoded is COMPRESSION_ERROR.
                exc.error_code = ErrorCodes.COMPRESSION_ERROR  # type: ignore[misc]
                raise
            stream = self.streams.get(frame.stream_id)
            if not isinstance(frame, HeadersFrame | DataFrame | WindowUpdateFrame) or (
                stream is None or stream.closed
            ):
                raise
            # RFC 9113 §8.1.1: a malformed request that h2 finds (content-length invalid or not
            # matching DATA, trailers without END_STREAM) is a stream error; so is a zero
            # WINDOW_UPDATE on a stream (§6.9). The field checks are in build_scope.
            guard_counters["malformed"] += 1
            logger.info("Malformed HTTP/2 request on stream %d: %s", frame.stream_id, exc)
            self.reset_stream(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
            if isinstance(frame, DataFrame):
                self.acknowledge_received_data(frame.flow_controlled_length, frame.stream_id)
            return [ev.StreamReset(
                stream_id=frame.stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False
            )]


class RateGuard:
    """A token bucket: `rate` events a second, bursts up to `rate`; hit() says when exceeded."""

    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp = time.monotonic()

    def hit(self) -> bool:
        now = time.monotonic()
        self.tokens = min(float(self.rate), self.tokens + (now - self.stamp) * self.rate) - 1.0
        self.stamp = now
        return self.tokens < 0


class QuietLog:
    """Stands in for an hpack module logger while its DEBUG level is off.

    hpack calls log.debug() for every integer and field it codes (about two dozen calls per
    request); a disabled Logger.debug() still costs two Python calls each, this one call.
    """

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logger, name)

    @staticmethod
    def debug(*args: Any, **kwargs: Any) -> None:
        pass


def quiet_hpack_debug() -> None:
    """Swap hpack's loggers for QuietLog while DEBUG is off for them, back when it is on."""
    for module in (hpack.hpack, hpack.table):
        current = getattr(module, "log", None)
        if current is None:
            continue
        real = current.logger if isinstance(current, QuietLog) else current
        quiet = not real.isEnabledFor(logging.DEBUG)
        if quiet != isinstance(current, QuietLog):
            module.log = QuietLog(real) if quiet else real  # type: ignore[attr-defined]


def new_h2_state(config: Config) -> ServerH2Connection:
    """A server-side h2 state machine carrying our settings and caps."""
    quiet_hpack_debug()
    conn = ServerH2Connection(
        H2Configuration(
            client_side=False,
            header_encoding=None,
            # RFC 9113 §8.1.1-§8.3: Http2Connection.build_scope checks request fields and joins
            # split cookies in the one pass that builds the scope (check_trailers for trailers);
            # h2's generator pipeline for the same checks cost more than the rest of a request.
            # (ServerH2Stream relies on validation and normalization being off.)
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        ),
        max_closed_streams=2 * config.h2_max_concurrent_streams,
    )
    table = config.h2_max_header_table_size
    conn.incoming_buffer = CappedFrameBuffer(config.h2_max_header_block_size)
    # RFC 7541 §4.2: the client may use the default 4096-byte table until it has seen our
    # SETTINGS; the smaller cap applies from its SETTINGS ACK (see on_settings_acked).
    conn.decoder = CappedDecoder(
        config.h2_max_header_list_size * HEADER_BOMB_FACTOR, max(table, 4096)
    )
    conn.encoder = CappedEncoder(table)
    conn.local_settings.update(dict(local_settings(config)))
    # Our receive windows take effect at once: the client can only send less than they allow
    # until it has seen them, never more.
    conn.local_settings.acknowledge()
    conn.max_inbound_frame_size = config.h2_max_frame_size
    return conn


def new_state(config: Config) -> Any:
    """The HTTP/2 engine state of one connection, per --http2-engine (see h2engine)."""
    if engine_name(config) == "nghttp2":
        return new_nghttp2_state(
            config, config.h2_max_header_list_size * HEADER_BOMB_FACTOR, guard_counters, logger
        )
    return new_h2_state(config)


# -- one stream -----------------------------------------------------------------------------------


class H2StreamTransport:
    """The StreamTransport of one HTTP/2 stream: writes within the peer's flow-control window."""

    supports_trailers = True
    __slots__ = (
        "connection", "stream_id", "http", "pending", "pending_end", "pending_trailers",
        "drain_waiter", "unacked", "received", "request_ended", "end_sent", "closed", "h1_body",
        "head", "answered", "deferred",
    )

    def __init__(self, connection: Http2Connection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.http: HTTPStream | None = None
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
        self.head: Headers | None = None  # response HEADERS held until this loop iteration ends
        self.deferred = False  # pending body waits for this loop pass's flush (COALESCE_LIMIT)
        self.answered = False  # the response is complete, the request still open

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

    def response_complete(self) -> None:
        self.connection.state.requests_done += 1
        self.connection.maybe_finish(self)

    # events ----------------------------------------------------------------------------------

    def wake(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


# -- the connection -------------------------------------------------------------------------------


class Http2Connection(asyncio.Protocol):
    """One HTTP/2 connection: h2 events in, HTTPStreams out, with limits and flood guards."""

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
        self.streams: dict[int, H2StreamTransport] = {}
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
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
        self.held_heads: list[H2StreamTransport] = []  # see H2StreamTransport.write_head
        self.deferred: list[H2StreamTransport] = []  # see H2StreamTransport.write_body
        self.preface_timer: asyncio.TimerHandle | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0  # loop time the connection last became idle (no streams)
        self.resets = RateGuard(config.h2_max_reset_rate)
        self.pings = RateGuard(config.h2_max_ping_rate)
        self.settings = RateGuard(config.h2_max_settings_rate)
        self.empty_frames = RateGuard(config.h2_max_empty_frame_rate)
        # h2c upgrade (RFC 7540 §3.2): the upgrading request's body precedes the preface.
        self.upgrade_stream: H2StreamTransport | None = None
        self.upgrade_body_left = 0
        self.upgrade_head = b""  # the 101 of an h2c upgrade, held until its body is in

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = tuple(peer[:2]) if isinstance(peer, tuple) else None  # type: ignore[assignment]
        self.server = tuple(sock[:2]) if isinstance(sock, tuple) else None  # type: ignore[assignment]
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
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

    def cancel_timers(self) -> None:
        for timer in (self.preface_timer, self.idle_timer):
            if timer is not None:
                timer.cancel()
        self.preface_timer = self.idle_timer = None

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
                self.h2.decoder.max_allowed_table_size = self.config.h2_max_header_table_size
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
            scope, status, wants_trailers, expect_continue = self.build_scope(event.headers)
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

    def build_scope(self, headers: Headers) -> tuple[dict[str, Any] | None, int, bool, bool]:
        """Check a request's fields and build its ASGI scope (same keys as HTTP/1.1), in one pass.

        Returns (scope, error status to answer instead, client accepts trailers, client expects
        100-continue); scope None is an Extended CONNECT (RFC 8441) for the WebSocket side.
        Raises Malformed for what RFC 9113 §8.1.1 makes a stream error.
        """
        pseudo: dict[bytes, bytes] = {}
        regular: Headers = []
        cookies: list[bytes] | None = None
        host: bytes | None = None
        content_length = b""
        size = 0
        wants_trailers = expect_continue = False
        for name, value in headers:
            size += len(name) + len(value) + 32  # RFC 9113 §6.5.2: the header list size
            if not name:
                raise Malformed("empty field name")  # §8.2.1
            if BAD_VALUE(value) is not None:
                raise Malformed(f"invalid value of {name!r}")  # §8.2.1
            if name[0] == 58:  # b":"
                # §8.3: known request pseudo-headers, each once, all before the regular fields.
                if regular or cookies is not None or name not in REQUEST_PSEUDO or name in pseudo:
                    raise Malformed(f"invalid, repeated or misplaced pseudo-header {name!r}")
                pseudo[name] = value
                continue
            if BAD_NAME(name) is not None:
                raise Malformed(f"invalid field name {name!r}")  # §8.2.1: uppercase, controls
            if name in SPECIAL_FIELDS:
                if name in HOP_BY_HOP:
                    raise Malformed(f"connection-specific field {name!r}")  # §8.2.2
                if name == b"te":
                    if value.lower() != b"trailers":
                        raise Malformed("TE other than trailers")  # §8.2.2
                    wants_trailers = True
                elif name == b"host":
                    if host is not None:
                        raise Malformed("more than one Host")
                    host = value
                elif name == b"cookie":
                    # §8.2.3: split cookie fields are joined into one (after the others).
                    if cookies is None:
                        cookies = []
                    cookies.append(value)
                    continue
                elif name == b"content-length":
                    content_length = value
                elif name == b"expect":
                    expect_continue = value.lower() == b"100-continue"
            regular.append((name, value))
        method = pseudo.get(b":method")
        path = pseudo.get(b":path")
        authority = pseudo.get(b":authority")
        if method is None:
            raise Malformed("no :method")  # §8.3.1
        if b":protocol" in pseudo:
            # RFC 8441 §4: :protocol only on CONNECT, which then carries :scheme and :path.
            if method != b"CONNECT" or path is None or b":scheme" not in pseudo:
                raise Malformed("invalid Extended CONNECT")
        elif method == b"CONNECT":
            if path is not None or b":scheme" in pseudo:
                raise Malformed("CONNECT with :scheme or :path")  # §8.5
        elif path is None or b":scheme" not in pseudo:
            raise Malformed("no :scheme or :path")  # §8.3.1
        if path is not None and not path:
            raise Malformed("empty :path")  # §8.3.1
        if authority is None:
            if host is None:
                raise Malformed("neither :authority nor Host")  # §8.3.1
        elif host is not None and host != authority:
            raise Malformed("Host differs from :authority")  # §8.3.1
        if cookies is not None:
            regular.append((b"cookie", b"; ".join(cookies)))
        if content_length and not content_length.isdigit():
            raise Malformed("invalid content-length")  # RFC 9110 §8.6 (h2 skips it on HEAD)
        if size > self.config.h2_max_header_list_size:
            return {}, 431, False, False
        body_limit = self.config.limit_request_body
        if content_length and body_limit is not None and int(content_length) > body_limit:
            return {}, 413, False, False
        if b":protocol" in pseudo and self.config.ws != "none":
            return None, 0, False, False
        if method == b"CONNECT":
            return {}, 501, False, False  # no CONNECT tunnels (RFC 9113 §8.5) on this server
        if authority is not None and host is None:
            # RFC 9113 §8.3.1: :authority stands in for Host; ASGI apps read Host.
            regular.insert(0, (b"host", authority))
        assert path is not None
        raw_path, _, query = path.partition(b"?")
        scheme = pseudo[b":scheme"]
        return http_scope(
            asgi=self.asgi_info, http_version="2", server=self.server, client=self.client,
            scheme=scheme.decode("latin-1"), method=method.decode("latin-1"),
            root_path=self.root_path, raw_path=raw_path, query_string=query, headers=regular,
            app_state=self.app_state,
        ), 0, wants_trailers, expect_continue

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
        self.transport.close()

    def on_preface_timeout(self) -> None:
        self.preface_timer = None
        guard_counters["preface_timeout"] += 1
        logger.info("HTTP/2 connection preface timed out from %s", self.peer_text())
        self.close(ErrorCodes.NO_ERROR)

    def arm_idle_timer(self) -> None:
        """(Re)start the idle clock; with no stream open past timeout_keep_alive, we close.

        One timer serves many idle periods: a request does not cancel it, and on_idle waits out
        the rest of the latest period (a timer created and cancelled per request was a
        measurable part of a small request's cost).
        """
        if self.dead or self.streams:
            return
        self.idle_since = now = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_at(now + self.config.timeout_keep_alive, self.on_idle)

    def on_idle(self) -> None:
        self.idle_timer = None
        if self.streams or self.dead:
            return  # busy: drop() restarts the clock when the last stream goes
        deadline = self.idle_since + self.config.timeout_keep_alive
        if self.loop.time() < deadline:
            self.idle_timer = self.loop.call_at(deadline, self.on_idle)
            return
        guard_counters["idle_timeout"] += 1
        self.close(ErrorCodes.NO_ERROR)

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY with the last stream we took; close once those finish."""
        if self.dead or self.goaway_sent:
            return
        self.goaway_sent = True
        for stream in list(self.streams.values()):
            server_shutdown = getattr(stream.http, "server_shutdown", None)
            if server_shutdown is not None:
                server_shutdown()  # a WebSocket (RFC 8441) closes with 1012
        # Sent by hand: h2's close_connection() would also forbid finishing in-flight streams.
        self.flush()
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.last_stream_id
        frame.error_code = ErrorCodes.NO_ERROR
        self.transport.write(frame.serialize())
        for stream in list(self.streams.values()):
            if stream.answered and not self.dead:
                self.reset(stream, ErrorCodes.NO_ERROR)  # only its upload was left (maybe_finish)
        if not self.streams and not self.dead:
            self.close(None)

    def peer_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unix socket"

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

    def flush(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()  # a no-op when flush() is that handle
            self.flush_handle = None
        if self.upgrade_head:  # no HTTP/2 byte leaves before the 101
            head, self.upgrade_head = self.upgrade_head, b""
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
            if self.flush_handle is not None:  # scheduled by push: this flush writes it all
                self.flush_handle.cancel()
                self.flush_handle = None
        self.unflushed = 0
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)


# -- entering HTTP/2 from HTTP/1.1 -----------------------------------------------------------------


def upgrade_from_h1(h1: H1Connection, stream: HTTPStream) -> bool:
    """RFC 7540 §3.2: answer `Upgrade: h2c` with 101 and serve the request as stream 1.

    Returns False (the request is served over HTTP/1.1) when the upgrade does not apply: TLS
    (RFC 9113 §3.1 forbids h2c there), h2 not enabled, a missing or bad HTTP2-Settings, a
    chunked body or one larger than a stream window.
    """
    config = h1.config
    if h1.scheme != "http" or "h2" not in config.protocols:
        return False
    settings: list[bytes] = []
    content_length = 0
    for name, value in stream.scope["headers"]:
        if name == b"http2-settings":
            settings.append(value)
        elif name == b"content-length":
            content_length = int(value)
        elif name == b"transfer-encoding":
            return False
    if len(settings) != 1 or content_length > config.h2_initial_window_size:
        # (A body is held until it is whole, see below: a larger one is served over HTTP/1.1,
        # as RFC 7540 §3.2 lets a server ignore Upgrade.)
        return False
    try:
        # RFC 7540 §3.2.1: base64url without padding.
        raw = base64.b64decode(settings[0] + b"=" * (-len(settings[0]) % 4), b"-_", True)
    except (binascii.Error, ValueError):
        return False
    connection = Http2Connection(config, h1.state, h1.app_state, h1.loop)
    try:
        connection.h2.initiate_upgrade_connection(base64.urlsafe_b64encode(raw))
    except ProtocolError:
        return False
    transport = h1.transport
    # RFC 7540 §3.2: a body is sent whole before the client's HTTP/2 frames. The 101 waits for
    # it (see start_http2): a client that sees the 101 mid-upload (curl) may stop uploading.
    connection.upgrade_head = (
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
    )
    if stream.expect_continue and content_length:
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the body is read before the 101
    # The HTTP/1.1 connection is done: the HTTP/2 connection owns the socket from here on.
    h1.closing = True
    h1.parsing = None
    h1.cancel_timers()
    h1.state.connections.discard(h1)
    h1.upgraded_to = connection
    transport.set_protocol(connection)
    upgraded = H2StreamTransport(connection, 1)
    upgraded.h1_body = True
    upgraded.request_ended = content_length == 0
    connection.upgrade_stream = upgraded
    connection.upgrade_body_left = content_length
    connection.connection_made(transport)
    connection.streams[1] = upgraded
    connection.last_stream_id = 1
    stream.scope["http_version"] = "2"
    stream.transport = upgraded
    stream.more_body = content_length > 0
    stream.expect_continue = False
    upgraded.http = stream
    h1.state.connections.discard(h1)
    if h1.read_paused:
        h1.read_paused = False
        transport.resume_reading()
    if not content_length:
        connection.start_app(stream)
    return True
