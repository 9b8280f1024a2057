"""RFC 9113 conformance at the frame level, in the spirit of h2spec (sections 3.5, 4, 5, 6, 8).

Each case writes raw frames to a real server and checks the defined answer: a GOAWAY with the
connection error code, an RST_STREAM with the stream error code, or a normal response. After a
stream error the connection must still serve.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame, SettingsFrame, WindowUpdateFrame

from tests.helpers import HTTP2_ENGINES, RunningServer, read_body, run_server
from tests.integration.test_http2_support import RawH2, request_headers

NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, COMPRESSION_ERROR = 0x5, 0x6, 0x9
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A frame as raw bytes (RFC 9113 §4.1), valid or not."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", stream_id
    ) + payload


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok:%d" % len(body)})


@pytest.fixture(scope="module", params=HTTP2_ENGINES)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_server(
        app, protocols="h2", h2_max_reset_rate=10_000, http2_engine=request.param
    ) as running:
        yield running


def headers(client: RawH2, stream_id: int, fields: list[tuple[bytes, bytes]] | None = None,
            flags: int = END_STREAM | END_HEADERS) -> bytes:
    return frame(HEADERS, flags, stream_id, client.encoder.encode(fields or request_headers()))


Build = Callable[[RawH2], bytes]

# (id, RFC section, frames to send, expected connection error code)
CONNECTION_ERRORS: list[tuple[str, Build, int]] = [
    ("4.2 DATA larger than SETTINGS_MAX_FRAME_SIZE",
     lambda c: headers(c, 1, request_headers(method=b"POST"), END_HEADERS)
     + frame(DATA, 0, 1, b"x" * 16385), FRAME_SIZE_ERROR),
    ("4.3 undecodable header block",
     lambda c: frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\xff\xff\xff\xff"), COMPRESSION_ERROR),
    ("5.1 DATA on an idle stream", lambda c: frame(DATA, END_STREAM, 1, b"x"), PROTOCOL_ERROR),
    ("5.1.1 even stream id from the client", lambda c: headers(c, 2), PROTOCOL_ERROR),
    ("5.1.1 stream id lower than a previous one",
     lambda c: headers(c, 5) + headers(c, 3), PROTOCOL_ERROR),
    ("5.5 unknown frame inside a header block",
     lambda c: headers(c, 1, flags=END_STREAM) + frame(0x20, 0, 1, b"x"), PROTOCOL_ERROR),
    ("6.1 DATA on stream 0", lambda c: frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),
    ("6.2 HEADERS on stream 0", lambda c: headers(c, 0), PROTOCOL_ERROR),
    ("6.3 PRIORITY on stream 0", lambda c: frame(PRIORITY, 0, 0, b"\x00\x00\x00\x01\x10"),
     PROTOCOL_ERROR),
    ("6.4 RST_STREAM on stream 0", lambda c: frame(RST_STREAM, 0, 0, b"\x00\x00\x00\x08"),
     PROTOCOL_ERROR),
    ("6.4 RST_STREAM on an idle stream", lambda c: frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08"),
     PROTOCOL_ERROR),
    ("6.4 RST_STREAM of wrong length",
     lambda c: headers(c, 1, flags=END_HEADERS) + frame(RST_STREAM, 0, 1, b"\x00\x00\x08"),
     FRAME_SIZE_ERROR),
    ("6.5 SETTINGS ACK with a payload", lambda c: frame(SETTINGS, ACK, 0, b"\x00" * 6),
     FRAME_SIZE_ERROR),
    ("6.5 SETTINGS on a stream", lambda c: frame(SETTINGS, 0, 1), PROTOCOL_ERROR),
    ("6.5 SETTINGS length not a multiple of 6", lambda c: frame(SETTINGS, 0, 0, b"\x00" * 3),
     FRAME_SIZE_ERROR),
    ("6.5.2 SETTINGS_ENABLE_PUSH of 2",
     lambda c: frame(SETTINGS, 0, 0, struct.pack(">HI", 0x2, 2)), PROTOCOL_ERROR),
    ("6.5.2 SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
     lambda c: frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, 2**31)), FLOW_CONTROL_ERROR),
    ("6.5.2 SETTINGS_MAX_FRAME_SIZE below 16384",
     lambda c: frame(SETTINGS, 0, 0, struct.pack(">HI", 0x5, 16383)), PROTOCOL_ERROR),
    ("6.5.2 SETTINGS_MAX_FRAME_SIZE above 2^24-1",
     lambda c: frame(SETTINGS, 0, 0, struct.pack(">HI", 0x5, 2**24)), PROTOCOL_ERROR),
    ("6.6 PUSH_PROMISE from a client",
     lambda c: headers(c, 1, flags=END_HEADERS)
     + frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02" + c.encoder.encode(request_headers())),
     PROTOCOL_ERROR),
    ("6.7 PING on a stream", lambda c: frame(PING, 0, 1, b"\x00" * 8), PROTOCOL_ERROR),
    ("6.7 PING of wrong length", lambda c: frame(PING, 0, 0, b"\x00" * 6), FRAME_SIZE_ERROR),
    ("6.8 GOAWAY on a stream", lambda c: frame(GOAWAY, 0, 1, b"\x00" * 8), PROTOCOL_ERROR),
    ("6.9 WINDOW_UPDATE of 0 on the connection",
     lambda c: frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"), PROTOCOL_ERROR),
    ("6.9 WINDOW_UPDATE of wrong length",
     lambda c: frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"), FRAME_SIZE_ERROR),
    # Length 0x000104: the low byte alone says 4. A zero first word must not make it a 4-byte
    # frame whose other 256 bytes would be read as frames.
    ("6.9 WINDOW_UPDATE of length 260 on the connection",
     lambda c: frame(WINDOW_UPDATE, 0, 0, b"\x00" * 260), FRAME_SIZE_ERROR),
    ("6.9 WINDOW_UPDATE of length 260 on a stream",
     lambda c: headers(c, 1, request_headers(method=b"POST"), END_HEADERS)
     + frame(WINDOW_UPDATE, 0, 1, b"\x00" * 260), FRAME_SIZE_ERROR),
    ("6.9.1 connection window above 2^31-1",
     lambda c: frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1)), FLOW_CONTROL_ERROR),
    ("6.10 CONTINUATION without HEADERS",
     lambda c: frame(CONTINUATION, END_HEADERS, 1, c.encoder.encode(request_headers())),
     PROTOCOL_ERROR),
    ("6.10 CONTINUATION on another stream",
     lambda c: headers(c, 1, flags=END_STREAM)
     + frame(CONTINUATION, END_HEADERS, 3, c.encoder.encode([(b"x", b"y")])), PROTOCOL_ERROR),
]


@pytest.mark.parametrize(
    ("build", "code"), [case[1:] for case in CONNECTION_ERRORS], ids=[c[0] for c in CONNECTION_ERRORS]
)
def test_connection_error(server: RunningServer, build: Build, code: int) -> None:
    with RawH2(server.port) as client:
        client.send_raw(build(client))
        goaway = client.goaway()
        assert goaway is not None, "expected GOAWAY"
        assert goaway.error_code == code
        assert client.read_frame() is None  # RFC 9113 §5.4.1: then the connection closes


def fields_without(name: bytes, **extra: bytes) -> list[tuple[bytes, bytes]]:
    return [item for item in request_headers(**extra) if item[0] != name]


# (id, headers of the request, body or None): each is malformed (RFC 9113 §8.1.1).
MALFORMED: list[tuple[str, list[tuple[bytes, bytes]], bytes | None]] = [
    ("8.2 uppercase field name", request_headers() + [(b"X-Upper", b"1")], None),
    ("8.2.2 connection-specific field", request_headers() + [(b"connection", b"close")], None),
    ("8.2.2 keep-alive field", request_headers() + [(b"keep-alive", b"5")], None),
    ("8.2.2 transfer-encoding field", request_headers() + [(b"transfer-encoding", b"chunked")],
     None),
    ("8.2.2 TE other than trailers", request_headers() + [(b"te", b"gzip")], None),
    ("8.3 missing :method", fields_without(b":method"), None),
    ("8.3 missing :path", fields_without(b":path"), None),
    ("8.3 missing :scheme", fields_without(b":scheme"), None),
    ("8.3 empty :path", fields_without(b":path") + [(b":path", b"")], None),
    ("8.3 duplicate :method", request_headers() + [(b":method", b"POST")], None),
    ("8.3 unknown pseudo-header", request_headers() + [(b":foo", b"bar")], None),
    ("8.3 response pseudo-header in a request", request_headers() + [(b":status", b"200")], None),
    ("8.3 pseudo-header after a regular field",
     [(b":method", b"GET"), (b":scheme", b"http"), (b"x", b"y"), (b":path", b"/")], None),
    ("8.1.1 content-length larger than DATA",
     request_headers(method=b"POST", content_length=b"10"), b"abc"),
    ("8.1.1 content-length smaller than DATA",
     request_headers(method=b"POST", content_length=b"2"), b"abc"),
    ("8.1.1 content-length not a number on HEAD",
     request_headers(method=b"HEAD", content_length=b"abc"), None),
    ("8.2.1 NUL in a field value", request_headers() + [(b"x-a", b"a\x00b")], None),
    ("8.2.1 CR in a field value", request_headers() + [(b"x-a", b"a\rb")], None),
    ("8.2.1 LF in a field value", request_headers() + [(b"x-a", b"a\nb")], None),
    ("8.2.1 LF in a pseudo-header value", fields_without(b":path") + [(b":path", b"/\n")], None),
    ("8.2.1 leading space in a field value", request_headers() + [(b"x-a", b" a")], None),
    ("8.2.1 trailing tab in a field value", request_headers() + [(b"x-a", b"a\t")], None),
    ("8.2.1 space in a field name", request_headers() + [(b"x a", b"1")], None),
    ("8.2.1 colon inside a field name", request_headers() + [(b"x:a", b"1")], None),
    ("8.2.1 DEL in a field name", request_headers() + [(b"x\x7f", b"1")], None),
    ("8.2.1 empty field name", request_headers() + [(b"", b"1")], None),
    ("8.2.2 upgrade field", request_headers() + [(b"upgrade", b"h2c")], None),
    ("8.2.2 proxy-connection field", request_headers() + [(b"proxy-connection", b"x")], None),
    ("8.3 :protocol without CONNECT", request_headers() + [(b":protocol", b"websocket")], None),
    ("8.3.1 Host differs from :authority", request_headers() + [(b"host", b"other")], None),
    ("8.3.1 two Host fields",
     fields_without(b":authority") + [(b"host", b"a"), (b"host", b"a")], None),
    ("8.3.1 neither :authority nor Host", fields_without(b":authority"), None),
    ("8.5 CONNECT with :path",
     [(b":method", b"CONNECT"), (b":authority", b"example.com:443"), (b":path", b"/")], None),
]


@pytest.mark.parametrize(("fields", "body"), [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_request_is_stream_error(server: RunningServer,
                                           fields: list[tuple[bytes, bytes]],
                                           body: bytes | None) -> None:
    with RawH2(server.port) as client:
        client.request(1, fields, body=body)
        assert client.stream_outcome(1)["reset"] == PROTOCOL_ERROR
        client.request(3)  # the connection keeps serving
        assert client.stream_outcome(3)["body"] == b"ok:0"


def test_3_5_invalid_preface_closes(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # a socket timeout here fails the test
            data += chunk
        # RFC 9113 §3.4: a connection error; the GOAWAY may be omitted. Only SETTINGS and
        # WINDOW_UPDATE (our preface) came back, never a response.
        assert data[3] == SETTINGS


def test_3_5_server_preface_is_settings(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        first = client.read_frame()
        assert isinstance(first, SettingsFrame) and "ACK" not in first.flags
        assert first.settings[SettingsFrame.ENABLE_PUSH] == 0
        assert first.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 100
        assert first.settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == 16384
        assert client.wait_for(SettingsFrame, flag="ACK") is not None  # it acknowledged ours


def test_4_1_unknown_frame_type_and_flags_are_ignored(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(frame(0x42, 0xFF, 0, b"ignored") + frame(PING, 0xF0, 0, b"12345678"))
        pong = client.wait_for(PingFrame, flag="ACK")
        assert isinstance(pong, PingFrame) and pong.opaque_data == b"12345678"
        client.request(1)
        assert client.stream_outcome(1)["body"] == b"ok:0"


def test_5_1_headers_on_closed_stream_is_stream_closed(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.request(1)
        assert client.stream_outcome(1)["body"] == b"ok:0"
        client.send_raw(headers(client, 1))
        goaway = client.goaway()
        assert goaway is not None and goaway.error_code == STREAM_CLOSED


def test_5_1_data_after_end_stream_is_stream_closed(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(headers(client, 1, request_headers(method=b"POST"), END_HEADERS)
                        + frame(DATA, END_STREAM, 1, b"a") + frame(DATA, 0, 1, b"b"))
        assert client.stream_outcome(1)["reset"] == STREAM_CLOSED
        assert client.is_alive()


def test_6_1_padded_data_is_accepted(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send(client.headers_frame(1, request_headers(method=b"POST"), end_stream=False),
                    DataFrame(1, b"hello", pad_length=10, flags=["END_STREAM", "PADDED"]))
        assert client.stream_outcome(1)["body"] == b"ok:5"


def test_6_3_priority_is_accepted_and_ignored(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(frame(PRIORITY, 0, 3, b"\x00\x00\x00\x01\x10"))
        client.request(1)
        assert client.stream_outcome(1)["body"] == b"ok:0"


def test_6_3_priority_of_wrong_length_is_stream_error(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(frame(PRIORITY, 0, 1, b"\x00\x00\x01"))
        frame_seen = client.read_frame()
        while frame_seen is not None and not isinstance(frame_seen, GoAwayFrame) and not (
            frame_seen.stream_id == 1
        ):
            frame_seen = client.read_frame()
        # h2 answers FRAME_SIZE_ERROR on the connection; RFC 9113 §6.3 allows it as a stream error.
        assert frame_seen is not None and getattr(frame_seen, "error_code", None) == FRAME_SIZE_ERROR


def test_6_5_unknown_setting_is_ignored(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(frame(SETTINGS, 0, 0, struct.pack(">HI", 0xFF, 7)))
        client.request(1)
        assert client.stream_outcome(1)["body"] == b"ok:0"


def test_6_7_ping_is_answered_with_same_payload(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.ping(b"abcdefgh")
        pong = client.wait_for(PingFrame, flag="ACK")
        assert isinstance(pong, PingFrame) and pong.opaque_data == b"abcdefgh"


def test_6_8_client_goaway_closes_connection(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(frame(GOAWAY, 0, 0, b"\x00" * 8))
        while (seen := client.read_frame()) is not None:
            assert not isinstance(seen, DataFrame)
        assert client.closed


def test_6_9_stream_window_update_of_zero_is_stream_error(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(headers(client, 1, request_headers(method=b"POST"), END_HEADERS)
                        + frame(WINDOW_UPDATE, 0, 1, b"\x00\x00\x00\x00"))
        assert client.stream_outcome(1)["reset"] == PROTOCOL_ERROR


@pytest.mark.usefixtures("http2_engine")
def test_6_9_2_settings_initial_window_change_applies_to_open_streams() -> None:
    big = b"w" * 100_000

    async def big_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": big})

    with run_server(big_app, protocols="h2") as server:
        with RawH2(server.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 100}) as client:
            client.send(WindowUpdateFrame(0, 1_000_000))
            client.request(1)
            first = client.wait_for(DataFrame, stream_id=1)
            assert isinstance(first, DataFrame) and len(first.data) == 100  # only our window
            more = SettingsFrame(0)
            more.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 200_000}
            client.send(more)
            outcome = client.stream_outcome(1)
            assert len(first.data) + len(outcome["body"]) == len(big)


def test_8_1_trailers_with_pseudo_header_is_stream_error(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(headers(client, 1, request_headers(method=b"POST"), END_HEADERS)
                        + frame(DATA, 0, 1, b"abc")
                        + headers(client, 1, [(b":path", b"/x")]))
        assert client.stream_outcome(1)["reset"] == PROTOCOL_ERROR


@pytest.mark.parametrize("field", [(b"X-Upper", b"1"), (b"connection", b"close"),
                                   (b"te", b"gzip"), (b"x-a", b"a\r\nb")],
                         ids=["uppercase", "connection-specific", "TE", "CRLF value"])
def test_8_1_malformed_trailers_are_stream_error(server: RunningServer,
                                                  field: tuple[bytes, bytes]) -> None:
    with RawH2(server.port) as client:
        client.send_raw(headers(client, 1, request_headers(method=b"POST"), END_HEADERS)
                        + frame(DATA, 0, 1, b"abc") + headers(client, 1, [field]))
        assert client.stream_outcome(1)["reset"] == PROTOCOL_ERROR
        client.request(3)  # the connection keeps serving
        assert client.stream_outcome(3)["body"] == b"ok:0"


def test_8_3_1_host_without_authority_is_served(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.request(1, fields_without(b":authority") + [(b"host", b"example.com")])
        assert client.stream_outcome(1)["body"] == b"ok:0"


def test_8_1_request_trailers_are_accepted(server: RunningServer) -> None:
    with RawH2(server.port) as client:
        client.send_raw(headers(client, 1, request_headers(method=b"POST"), END_HEADERS)
                        + frame(DATA, 0, 1, b"abc")
                        + headers(client, 1, [(b"x-checksum", b"1")]))
        assert client.stream_outcome(1)["body"] == b"ok:3"
