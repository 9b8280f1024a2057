"""The HTTP/3 framing layer: aioquic's H3Connection with our QPACK sizes, SETTINGS and stream errors.

It also carries what aioquic 1.3 (Python 3.10) lacks and 1.7 does itself, so both behave alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import pylsqpack
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import (
    ErrorCode,
    FrameType,
    H3Connection,
    H3Stream,
    HeadersState,
    MessageError,
    ProtocolError,
    Setting,
    encode_frame,
)
from aioquic.h3.events import DataReceived, H3Event
from aioquic.quic.connection import QuicConnection

Headers = list[tuple[bytes, bytes]]
# HTTP/3 frame types aioquic parses; any other type on a request stream is skipped (RFC 9114 §9).
KNOWN_REQUEST_FRAMES = frozenset((FrameType.DATA, FrameType.HEADERS, FrameType.PUSH_PROMISE))


class FrameTruncated(ProtocolError):
    """RFC 9114 §7.1: a frame cut short by the end of its stream is an H3_FRAME_ERROR."""

    error_code = ErrorCode.H3_FRAME_ERROR


@dataclass
class StreamMalformed(H3Event):
    """A request stream broke an HTTP/3 message rule; only that stream is reset."""

    stream_id: int
    reason: str


class RoadrunnerH3Connection(H3Connection):
    """aioquic's H3Connection with our QPACK table sizes, field-section limit, stream errors."""

    def __init__(
        self,
        quic: QuicConnection,
        table_capacity: int,
        blocked_streams: int,
        max_field_section_size: int,
        enable_connect_protocol: bool = True,
    ) -> None:
        self.rr_table_capacity = table_capacity
        self.rr_enable_connect_protocol = enable_connect_protocol
        self.rr_blocked_streams = blocked_streams
        self.rr_max_field_section_size = max_field_section_size
        self.discarded: set[int] = set()
        super().__init__(quic)

    def _init_connection(self) -> None:
        # RFC 9204 §3.2.3: the decoder's table capacity and blocked streams are announced in
        # SETTINGS; the decoder must be built with the same values before they are sent.
        self._max_table_capacity = self.rr_table_capacity
        self._blocked_streams = self.rr_blocked_streams
        self._decoder = pylsqpack.Decoder(self.rr_table_capacity, self.rr_blocked_streams)
        super()._init_connection()

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        # RFC 9114 §4.2.2: advertise the largest field section we accept.
        settings[Setting.MAX_FIELD_SECTION_SIZE] = self.rr_max_field_section_size
        if not self.rr_enable_connect_protocol:
            # RFC 9220 §3: without the setting (--ws none) clients send no Extended CONNECT.
            del settings[Setting.ENABLE_CONNECT_PROTOCOL]
        return settings

    def _receive_request_or_push_data(
        self, stream: H3Stream, data: bytes, stream_ended: bool
    ) -> list[H3Event]:
        if stream.stream_id in self.discarded:
            return []
        try:
            events = super()._receive_request_or_push_data(stream, data, stream_ended)
        except MessageError as exc:
            # RFC 9114 §4.1.2: a malformed request is a stream error of type H3_MESSAGE_ERROR.
            self.reset_both(stream.stream_id, ErrorCode.H3_MESSAGE_ERROR)
            stream.buffer = b""
            stream.blocked = False
            stream.receiving_ended = stream.sending_ended = True
            return [StreamMalformed(stream_id=stream.stream_id, reason=exc.reason_phrase)]
        # The rules below are aioquic 1.7's own; on 1.3 (Python 3.10) they are ours. With 1.7
        # their conditions never hold here: aioquic has already acted.
        if stream.blocked:
            return events
        if stream.frame_type not in KNOWN_REQUEST_FRAMES and stream.frame_size is not None:
            # RFC 9114 §9, §10.5: an unknown frame's payload is ignored, so drop it as it arrives
            # (aioquic 1.3 would buffer the whole frame, however long the peer declares it).
            stream.frame_size -= len(stream.buffer)
            stream.buffer = b""
        if stream.receiving_ended:
            if stream.buffer or stream.frame_size:
                raise FrameTruncated("Frame is truncated by the end of the stream")
            if stream.headers_recv_state == HeadersState.INITIAL:
                # RFC 9114 §4.1: the stream ended before a request head; nothing will answer it.
                self.abort_unanswered(stream.stream_id)
                stream.sending_ended = True  # aioquic drops the state of an ended stream
                return []
            if stream_ended and not any(getattr(event, "stream_ended", False) for event in events):
                # RFC 9114 §4.1: an unknown frame may be the last one; the request still ends
                # (aioquic 1.3 loses the end of the stream when it comes with such a frame).
                events.append(DataReceived(data=b"", stream_id=stream.stream_id, stream_ended=True))
        return events

    def never_answered(self, stream_id: int) -> bool:
        """A request stream whose head never reached us and on which we sent nothing."""
        if stream_id & 3 or stream_id in self.discarded:  # not a client bidi stream (RFC 9000 §2.1)
            return False
        stream = self._stream.get(stream_id)
        if stream is not None:
            return stream.headers_recv_state == HeadersState.INITIAL
        quic_stream = self._quic._streams.get(stream_id)
        return (
            quic_stream is not None
            and quic_stream.sender.highest_offset == 0
            and quic_stream.sender._buffer_fin is None
        )

    def abort_unanswered(self, stream_id: int) -> None:
        """A request stream ended or was reset before its head: reset our half too.

        Without this the QUIC stream never closes and the client never gets its stream credit
        back. aioquic 1.7 does this itself (H3_REQUEST_INCOMPLETE); 1.3 does not.
        """
        self.discarded.add(stream_id)
        self._quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_INCOMPLETE)

    def forget_unanswered(self, stream_id: int) -> None:
        """`abort_unanswered` for a reset stream, dropping its HTTP/3 state (outside parsing)."""
        self.abort_unanswered(stream_id)
        stream = self._stream.get(stream_id)
        if stream is not None and not stream.blocked:
            # A blocked head stays with the QPACK decoder, which resumes it by stream id; the
            # `discarded` mark makes Http3Connection ignore it then.
            del self._stream[stream_id]

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        """An interim (1xx) response; the final response still follows (RFC 9114 §4.1).

        aioquic 1.3 takes any first HEADERS for the final one and would refuse the DATA after
        it; 1.7 knows interim responses. Resetting the send state fits both.
        """
        self.send_headers(stream_id, headers, False)
        self._stream[stream_id].headers_send_state = HeadersState.INITIAL

    def reset_both(self, stream_id: int, error_code: int) -> None:
        """Reset both halves of a request stream and ignore whatever still arrives on it."""
        self.discarded.add(stream_id)
        self._quic.reset_stream(stream_id, error_code)
        stream = self._quic._streams.get(stream_id)
        if stream is not None and not stream.receiver.is_finished:
            self._quic.stop_stream(stream_id, error_code)

    def discard_stream(self, stream_id: int, error_code: int) -> None:
        """`reset_both`, and drop the HTTP/3 state of the stream (outside event handling)."""
        self.reset_both(stream_id, error_code)
        self._stream.pop(stream_id, None)

    def send_goaway(self, stream_id: int) -> None:
        """RFC 9114 §5.2: no request stream at or above `stream_id` will be processed."""
        assert self._local_control_stream_id is not None
        self._quic.send_stream_data(
            self._local_control_stream_id, encode_frame(FrameType.GOAWAY, encode_uint_var(stream_id))
        )
