"""Entering HTTP/2 from HTTP/1.1: the h2c Upgrade (RFC 7540 §3.2)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import TYPE_CHECKING

from h2.exceptions import ProtocolError

from roadrunner.protocols.http2.connection import Http2Connection, PlainReadsHttp2Connection
from roadrunner.protocols.http2.stream import H2StreamTransport

if TYPE_CHECKING:
    from roadrunner.asgi.stream import HTTPStream
    from roadrunner.protocols.http1 import H1Connection


def upgrade_from_h1(h1: H1Connection, stream: HTTPStream) -> bool:
    """RFC 7540 §3.2: answer `Upgrade: h2c` with 101 and serve the request as stream 1.

    Returns False (the request is served over HTTP/1.1) when the upgrade does not apply: TLS
    (RFC 9113 §3.1 forbids h2c there), h2 not enabled, a request pipelined behind another, one
    over --limit-concurrency, a missing or bad HTTP2-Settings, a chunked body or one larger than
    a stream window.
    """
    config = h1.config
    if h1.scheme != "http" or "h2" not in config.protocols:
        return False
    if h1.active is not None or h1.pipeline:
        # RFC 9112 §9.3.2: responses leave in request order, and a 101 would come before the
        # earlier request's response: served over HTTP/1.1 in turn (RFC 7540 §3.2 lets a
        # server ignore Upgrade).
        return False
    if h1.over_concurrency_limit():
        return False  # shed like any request: served over HTTP/1.1, run_stream answers 503
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
    # Reads reach it as they reached the HTTP/1.1 connection (tcp.reads_by_data_received).
    h2_class = PlainReadsHttp2Connection if isinstance(h1, asyncio.Protocol) else Http2Connection
    connection = h2_class(config, h1.state, h1.app_state, h1.loop)
    try:
        connection.h2.initiate_upgrade(raw)
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
    h1.state.connections.discard(h1)  # the HTTP/2 connection counts itself (connection_made)
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
    if h1.read_paused:
        h1.read_paused = False
        transport.resume_reading()
    if not content_length:
        connection.start_app(stream)
    return True
