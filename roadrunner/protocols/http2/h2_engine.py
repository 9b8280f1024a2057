"""The pure-Python HTTP/2 engine: the h2 library's state machine with our limits.

Small subclasses of h2 / hpack / hyperframe pieces turn their defaults into roadrunner's caps
(encoded header block, decoded header list, HPACK table) and turn what RFC 9113 makes a stream
error into one where h2 would end the connection. `new_h2_state` builds one connection's state;
it implements `engine.H2Engine`.
"""

from __future__ import annotations

import base64
import logging
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
from h2.stream import H2Stream
from h2.utilities import HeaderValidationFlags
from hpack import Decoder, Encoder, HPACKError
from hyperframe.exceptions import InvalidFrameError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    WindowUpdateFrame,
)

from roadrunner.protocols.http2.guards import (
    HEADER_BOMB_FACTOR,
    HeaderBlockTooLarge,
    guard_counters,
)
from roadrunner.protocols.http2.rules import local_settings

if TYPE_CHECKING:
    from roadrunner.config import Config

logger = logging.getLogger("roadrunner.error")

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
        if len(data) >= 13 and data[3] == 0x8 and data[:3] == b"\0\0\4" and (
            data[5:9] != b"\0\0\0\0" and data[9:13] == b"\0\0\0\0"
        ):
            # RFC 9113 §6.9: a zero increment on a stream is a stream error, which hyperframe
            # cannot express: hand it on unvalidated for ServerH2Connection to reset. All 24
            # length bits are 4: any other length is a FRAME_SIZE_ERROR, which hyperframe finds.
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

    def __init__(self, config: H2Configuration, max_closed_streams: int, table_cap: int) -> None:
        # h2 remembers how each closed stream ended, for up to MAX_CLOSED_STREAMS (65,536) per
        # connection: ~130 bytes a stream for a long-lived connection's whole life. RFC 9113
        # §5.1 needs it only while frames sent before our RST_STREAM can still arrive, and a
        # compliant peer has at most MAX_CONCURRENT_STREAMS streams open meanwhile.
        self.MAX_CLOSED_STREAMS = max_closed_streams
        self.table_cap = table_cap  # --h2-max-header-table-size, see settings_acknowledged
        super().__init__(config)

    def initiate_upgrade(self, settings: bytes) -> None:
        """RFC 7540 §3.2: apply the decoded HTTP2-Settings; stream 1 is half-closed (remote).

        h2's `initiate_upgrade_connection` takes the header's base64 form (padded) and decodes
        it; a payload that is no SETTINGS body (RFC 9113 §6.5) is a ProtocolError, as on nghttp2.
        """
        try:
            self.initiate_upgrade_connection(base64.urlsafe_b64encode(settings))
        except InvalidFrameError as exc:
            raise ProtocolError("invalid HTTP2-Settings") from exc

    def settings_acknowledged(self) -> None:
        """The client acknowledged our SETTINGS: from now on its HPACK table fits our cap."""
        self.decoder.max_allowed_table_size = self.table_cap

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
            # RFC 9113 §8.1.1-§8.3: rules.build_scope checks request fields and joins
            # split cookies in the one pass that builds the scope (check_trailers for trailers);
            # h2's generator pipeline for the same checks cost more than the rest of a request.
            # (ServerH2Stream relies on validation and normalization being off.)
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        ),
        max_closed_streams=2 * config.h2_max_concurrent_streams,
        table_cap=config.h2_max_header_table_size,
    )
    table = config.h2_max_header_table_size
    conn.incoming_buffer = CappedFrameBuffer(config.h2_max_header_block_size)
    # RFC 7541 §4.2: the client may use the default 4096-byte table until it has seen our
    # SETTINGS; the smaller cap applies from its SETTINGS ACK (see settings_acknowledged).
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

