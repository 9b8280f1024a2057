"""What a long-lived HTTP/2 connection keeps of the streams it has closed.

h2 remembers how every closed stream ended, up to 65,536 per connection, so that frames still in
flight after a RST_STREAM are answered as a stream error (RFC 9113 §5.1). On a connection that
serves many streams that is ~130 bytes a stream, kept for the connection's life (the soak in
bench/soak.py: +20 MiB for 200,000 streams on 100 connections). The memory is bounded by the
concurrency limit, and the RFC behaviour kept for the streams that can still have frames in flight.

These tests are about the h2 engine's bookkeeping and run on it. The nghttp2 engine keeps no
record of closed streams: DATA on a stream the client reset earlier is ignored there, not
answered RST_STREAM(STREAM_CLOSED) (docs/http2.md, "Engines").
"""

from __future__ import annotations

from typing import Any

from hyperframe.frame import DataFrame, RstStreamFrame

from tests.helpers import run_server
from tests.integration.test_http2_support import RawH2, request_headers

MAX_CONCURRENT = 10
STREAM_CLOSED = 0x5


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def test_closed_streams_remembered_are_bounded_by_the_concurrency_limit() -> None:
    with run_server(hello, protocols="h2", http2_engine="h2",
                    h2_max_concurrent_streams=MAX_CONCURRENT) as server:
        with RawH2(server.port) as client:
            for stream_id in range(1, 2 * 300, 2):
                client.request(stream_id)
                assert client.stream_outcome(stream_id)["body"] == b"hello"
            (connection,) = server.server.server_state.connections
            remembered = len(connection.h2._closed_streams) + len(connection.h2.streams)
    assert remembered <= 3 * MAX_CONCURRENT  # was 300: one entry per stream served


def test_a_frame_on_a_stream_reset_a_concurrency_limit_ago_is_still_a_stream_error() -> None:
    # RFC 9113 §5.1: frames after RST_STREAM are a stream error of type STREAM_CLOSED (not a
    # connection error), for as long as a compliant peer can still have them in flight.
    with run_server(hello, protocols="h2", http2_engine="h2",
                    h2_max_concurrent_streams=MAX_CONCURRENT) as server:
        with RawH2(server.port) as client:
            client.send(client.headers_frame(1, request_headers(method=b"POST"), end_stream=False),
                        RstStreamFrame(1, error_code=0x8))
            for stream_id in range(3, 3 + 2 * (MAX_CONCURRENT + MAX_CONCURRENT // 2), 2):
                client.request(stream_id)
                assert client.stream_outcome(stream_id)["body"] == b"hello"
            client.send(DataFrame(1, b"late", flags=["END_STREAM"]))
            assert client.stream_outcome(1)["reset"] == STREAM_CLOSED
            client.request(101)
            assert client.stream_outcome(101)["body"] == b"hello"  # the connection serves on
