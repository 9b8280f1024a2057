"""HTTP/2 flood and abuse guards: each limit crossed by a raw client, answered with the defined
error code, counted, and other connections keep being served."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from roadrunner.protocols.http2.guards import guard_counters
from tests.helpers import RunningServer, run_server
from tests.integration.test_http2_support import RawH2, request_headers

# Every test here runs once per HTTP/2 engine (nghttp2, h2): see the http2_engine fixture.
pytestmark = pytest.mark.usefixtures("http2_engine")

PROTOCOL_ERROR, FLOW_CONTROL_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x1, 0x3, 0x9, 0xB


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    options = getattr(request, "param", {})
    with run_server(hello, protocols="h2", **options) as running:
        yield running


def still_serving(server: RunningServer) -> bool:
    with RawH2(server.port) as client:
        client.request(1)
        return bool(client.stream_outcome(1)["body"] == b"hello")


def goaway_code(client: RawH2) -> int | None:
    frame = client.goaway()
    return None if frame is None else int(frame.error_code)


@pytest.mark.parametrize("server", [{"h2_max_reset_rate": 20}], indirect=True)
def test_rapid_reset_gets_enhance_your_calm(server: RunningServer) -> None:
    """CVE-2023-44487: open a stream and reset it at once, in a tight loop."""
    before = guard_counters["rapid_reset"]
    with RawH2(server.port) as client:
        frames = []
        for stream_id in range(1, 2 * 60, 2):
            frames += [client.headers_frame(stream_id, request_headers(), end_stream=False),
                       RstStreamFrame(stream_id, error_code=0x8)]
        client.send(*frames)
        assert goaway_code(client) == ENHANCE_YOUR_CALM
    assert guard_counters["rapid_reset"] == before + 1
    assert still_serving(server)


def test_resets_below_the_rate_are_fine(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        for stream_id in (1, 3, 5):
            client.send(client.headers_frame(stream_id, request_headers(), end_stream=False),
                        RstStreamFrame(stream_id, error_code=0x8))
        client.request(7)
        assert client.stream_outcome(7)["body"] == b"hello"


@pytest.mark.parametrize("server", [{"h2_max_settings_rate": 10}], indirect=True)
def test_settings_flood(server: RunningServer) -> None:
    before = guard_counters["settings_flood"]
    with RawH2(server.port) as client:
        client.send(*[SettingsFrame(0) for _ in range(50)])
        assert goaway_code(client) == ENHANCE_YOUR_CALM
    assert guard_counters["settings_flood"] == before + 1
    assert still_serving(server)


@pytest.mark.parametrize("server", [{"h2_max_ping_rate": 10}], indirect=True)
def test_ping_flood(server: RunningServer) -> None:
    before = guard_counters["ping_flood"]
    with RawH2(server.port) as client:
        for _ in range(50):
            client.ping()
        assert goaway_code(client) == ENHANCE_YOUR_CALM
    assert guard_counters["ping_flood"] == before + 1
    assert still_serving(server)


@pytest.mark.parametrize("server", [{"h2_max_empty_frame_rate": 10}], indirect=True)
def test_empty_data_frame_flood(server: RunningServer) -> None:
    before = guard_counters["empty_frames"]
    with RawH2(server.port) as client:
        client.send(client.headers_frame(1, request_headers(method=b"POST"), end_stream=False))
        client.send(*[DataFrame(1, b"") for _ in range(50)])
        assert goaway_code(client) == ENHANCE_YOUR_CALM
    assert guard_counters["empty_frames"] == before + 1
    assert still_serving(server)


def test_connection_window_overflow_is_flow_control_error(server: RunningServer) -> None:
    # RFC 9113 §6.9.1: a window above 2^31-1 is a FLOW_CONTROL_ERROR.
    before = guard_counters["flow_control"]
    with RawH2(server.port) as client:
        client.send(WindowUpdateFrame(0, 2**31 - 1), WindowUpdateFrame(0, 2**31 - 1))
        assert goaway_code(client) == FLOW_CONTROL_ERROR
    assert guard_counters["flow_control"] == before + 1


def test_stream_window_overflow_resets_the_stream(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send(client.headers_frame(1, request_headers(method=b"POST"), end_stream=False),
                    WindowUpdateFrame(1, 2**31 - 1), WindowUpdateFrame(1, 2**31 - 1))
        assert client.stream_outcome(1)["reset"] == FLOW_CONTROL_ERROR
        assert client.is_alive()


@pytest.mark.parametrize("server", [{"h2_max_header_block_size": 4096}], indirect=True)
def test_continuation_flood_gets_enhance_your_calm(server: RunningServer) -> None:
    before = guard_counters["header_block"]
    with RawH2(server.port) as client:
        block = client.encoder.encode(request_headers(x_pad=b"p" * 300))
        head = HeadersFrame(1, block[:100])
        frames: list[Any] = [head]
        for _ in range(100):  # never END_HEADERS: the server must not buffer this forever
            frames.append(ContinuationFrame(1, b"\x40\x01a\x01b" * 20))
        client.send(*frames)
        assert goaway_code(client) == ENHANCE_YOUR_CALM
    assert guard_counters["header_block"] >= before + 1
    assert still_serving(server)


def test_empty_continuation_frames_are_capped(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        block = client.encoder.encode(request_headers())
        client.send(HeadersFrame(1, block), *[ContinuationFrame(1, b"") for _ in range(100)])
        assert goaway_code(client) == ENHANCE_YOUR_CALM


@pytest.mark.parametrize("server", [{"h2_max_header_list_size": 1024}], indirect=True)
def test_hpack_bomb_closes_the_connection(server: RunningServer) -> None:
    """A small encoded block that decodes far past the advertised list size (HPACK bomb)."""
    before = guard_counters["header_list"]
    with RawH2(server.port) as client:
        encoder = Encoder()
        first = encoder.encode(request_headers(x_bomb=b"b" * 3000))
        client.send(HeadersFrame(1, first, flags=["END_HEADERS", "END_STREAM"]))
        assert client.stream_outcome(1)["status"] == 431
        # The indexed field is one byte each now: 20 of them decode to ~60 KB.
        again = encoder.encode(request_headers(x_bomb=b"b" * 3000) + [(b"x-bomb", b"b" * 3000)] * 20)
        client.send(HeadersFrame(3, again, flags=["END_HEADERS", "END_STREAM"]))
        assert goaway_code(client) == ENHANCE_YOUR_CALM
    assert guard_counters["header_list"] == before + 1


def test_hpack_table_size_update_above_settings_is_compression_error(
    server: RunningServer,
) -> None:
    # RFC 7541 §6.3: a dynamic table size update above SETTINGS_HEADER_TABLE_SIZE.
    with RawH2(server.port) as client:
        update = b"\x3f\xe1\xff\x03"  # table size update to 65536 (5-bit prefix integer)
        client.send(HeadersFrame(1, update + client.encoder.encode(request_headers()),
                                 flags=["END_HEADERS", "END_STREAM"]))
        assert goaway_code(client) == COMPRESSION_ERROR


@pytest.mark.parametrize("server", [{"h2_max_header_table_size": 256}], indirect=True)
def test_client_cannot_grow_our_encoder_table(server: RunningServer) -> None:
    """A client advertising a huge SETTINGS_HEADER_TABLE_SIZE: our encoder stays at our cap."""
    with RawH2(server.port, settings={SettingsFrame.HEADER_TABLE_SIZE: 1 << 30}) as client:
        client.decoder.max_allowed_table_size = 1 << 30
        client.encoder.header_table_size = 256  # honour the server's SETTINGS_HEADER_TABLE_SIZE
        for stream_id in (1, 3, 5):
            client.request(stream_id)
            assert client.stream_outcome(stream_id)["body"] == b"hello"
        assert client.decoder.header_table.maxsize <= 256


@pytest.mark.parametrize("server", [{"h2_max_frame_size": 16384}], indirect=True)
def test_oversized_frame_is_frame_size_error(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send(client.headers_frame(1, request_headers(method=b"POST"), end_stream=False),
                    DataFrame(1, b"x" * 20000))
        assert goaway_code(client) == 0x6  # FRAME_SIZE_ERROR, RFC 9113 §4.2
