"""The QUIC layer of HTTP/3: our aioquic configuration and credit-following flow control.

`CreditQuicConnection` returns receive credit only as the app consumes the body, and bounds the
peer's concurrent request streams (RFC 9000 §4.1, §4.6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

if TYPE_CHECKING:
    from roadrunner.config import Config

# aioquic differences, detected once. Python 3.10 only gets aioquic 1.3; 3.11+ gets 1.7.
# Newer aioquic gives the peer one MAX_STREAMS slot back for each of its streams that closes
# (RFC 9000 §4.6); 1.3 instead doubles MAX_STREAMS as streams open, which would let a client run
# unboundedly many concurrent requests. `CreditQuicConnection` returns the slots itself on 1.3.
QUIC_RETURNS_STREAM_CREDIT = hasattr(QuicConnection, "_stream_limit")


def build_quic_configuration(config: Config) -> QuicConfiguration:
    """The server-side QUIC configuration for --protocols h3 (TLS 1.3 with ALPN h3)."""
    quic_config = QuicConfiguration(
        is_client=False,
        alpn_protocols=["h3"],
        idle_timeout=config.h3_idle_timeout,
        max_data=config.h3_max_data,
        max_stream_data=config.h3_max_stream_data,
    )
    assert config.ssl_certfile is not None
    quic_config.load_cert_chain(
        config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password
    )
    return quic_config


class CreditQuicConnection(QuicConnection):
    """A QuicConnection whose receive credit follows what the application consumed.

    aioquic doubles a stream's MAX_STREAM_DATA as soon as data arrives; here the limit is
    `consumed + window`, so a slow app stops a fast uploader (RFC 9000 §4.1) instead of
    buffering the whole body. `unconsumed[stream_id]` counts body bytes handed to a stream
    and not yet read by the app.
    """

    def __init__(self, *, max_streams_bidi: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # RFC 9000 §4.6: initial_max_streams_bidi bounds concurrent request streams.
        self._local_max_streams_bidi.value = max_streams_bidi
        self._local_max_streams_bidi.sent = max_streams_bidi
        self.stream_window = self._configuration.max_stream_data
        self.connection_window = self._configuration.max_data
        self.unconsumed: dict[int, int] = {}
        self.unconsumed_total = 0
        self.credited: set[int] = set()  # closed peer streams already given back (aioquic 1.3)

    def add_unconsumed(self, stream_id: int, nbytes: int) -> None:
        self.unconsumed[stream_id] = self.unconsumed.get(stream_id, 0) + nbytes
        self.unconsumed_total += nbytes

    def consume(self, stream_id: int, nbytes: int) -> None:
        held = self.unconsumed.get(stream_id, 0)
        nbytes = min(nbytes, held)
        self.unconsumed[stream_id] = held - nbytes
        self.unconsumed_total -= nbytes

    def release(self, stream_id: int) -> None:
        """The stream's body will never be read: give its credit back."""
        self.unconsumed_total -= self.unconsumed.pop(stream_id, 0)

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        max_data = self._local_max_data
        target = max_data.used - self.unconsumed_total + self.connection_window
        if target - max_data.value >= self.connection_window // 2:
            max_data.value = target
        used = max_data.used
        max_data.used = 0  # keeps aioquic's own doubling rule from firing
        max_streams = self._local_max_streams_bidi
        streams_used = max_streams.used
        if not QUIC_RETURNS_STREAM_CREDIT:
            self.return_stream_credit()
            max_streams.used = 0  # aioquic 1.3 would double MAX_STREAMS as streams open
        try:
            super()._write_connection_limits(builder=builder, space=space)
        finally:
            max_data.used = used
            max_streams.used = streams_used

    def return_stream_credit(self) -> None:
        """aioquic 1.3: one more stream for the peer per request stream that closed (RFC 9000 §4.6).

        aioquic drops a finished stream only after this runs in the same packet, so every closed
        stream is seen here while it is still in `_streams`.
        """
        credited = self.credited
        for stream_id, stream in self._streams.items():
            # Client-initiated bidirectional streams (RFC 9000 §2.1): request streams.
            if stream_id & 3 == 0 and stream.is_finished and stream_id not in credited:
                credited.add(stream_id)
                self._local_max_streams_bidi.value += 1
        if credited:
            credited.intersection_update(self._streams)  # dropped streams are never seen again

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        # aioquic calls this for every stream in every packet it builds: return early when
        # there is nothing to announce (it showed up at ~7% of a download's server CPU).
        if not stream.max_stream_data_local:
            return  # a stream we opened and only send on: no receive credit to give
        receiver = stream.receiver
        if not receiver.is_finished:
            held = self.unconsumed.get(stream.stream_id, 0) if stream.stream_id is not None else 0
            consumed = receiver.starting_offset() - held
            target = consumed + self.stream_window
            if target - stream.max_stream_data_local >= self.stream_window // 2:
                stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent == stream.max_stream_data_local:
            return  # RFC 9000 §19.10: MAX_STREAM_DATA only when the limit moved
        highest = receiver.highest_offset
        receiver.highest_offset = 0  # keeps aioquic's own doubling rule from firing
        try:
            super()._write_stream_limits(builder=builder, space=space, stream=stream)
        finally:
            receiver.highest_offset = highest

    def send_queued(self, stream_id: int) -> int:
        """Bytes written to a stream and never sent yet (retransmissions not counted)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return sender._buffer_stop - sender.highest_offset
