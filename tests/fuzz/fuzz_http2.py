"""HTTP/2: arbitrary frames into Http2Connection over an in-memory transport.

The input is a list of frames (each: type, flags, 4-byte stream id, 2-byte length, payload),
written after the client connection preface in chunks the input picks. Whatever they are:
- no exception escapes and nothing reaches the loop's exception handler or the error log;
- after them the connection still serves (unless the client sent GOAWAY: h2 then closes): a fresh, valid request (HPACK static-table fields
  only, so the fuzzed dynamic table cannot matter) is answered (HEADERS) or refused
  (RST_STREAM), or the connection has sent GOAWAY and closed;
- once the client hangs up, no task and no connection is left in the server's registry.

Input: byte 0 bits 0-2 pick how the frames are cut into writes; then the frames.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import driver  # noqa: E402

with driver.instrumented():
    from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

    from roadrunner.protocols.http2.connection import Http2Connection
    from roadrunner.server import ServerState

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CONFIG = driver.config()
# :method GET, :scheme http, :path /, :authority x (RFC 7541 Appendix A; never indexed).
REQUEST_BLOCK = b"\x82\x86\x84\x11\x01x"
GOAWAY = 7


def frames_of(body: bytes) -> tuple[bytes, set[int]]:
    """The input's frames on the wire, each with its 24-bit length set from its payload."""
    out = bytearray()
    kinds = set()
    pos = 0
    while pos + 8 <= len(body):
        kind, flags, stream_id, length = struct.unpack_from("!BBIH", body, pos)
        pos += 8
        kinds.add(kind)
        payload = body[pos:pos + length]
        pos += len(payload)
        out += struct.pack("!I", len(payload))[1:] + bytes((kind, flags)) + struct.pack("!I", stream_id)
        out += payload
    return bytes(out), kinds


def read_frames(data: bytes) -> list[Frame]:
    frames = []
    pos = 0
    while pos + 9 <= len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[pos:pos + 9]))
        frame.parse_body(memoryview(data[pos + 9:pos + 9 + length]))
        frames.append(frame)
        pos += 9 + length
    assert pos == len(data), "the server wrote a partial frame"
    return frames


def cut(wire: bytes, mode: int) -> list[bytes]:
    if mode == 0 or len(wire) < 2:
        return [wire]
    rng = random.Random(mode)
    points = sorted(rng.sample(range(1, len(wire)), min(len(wire) - 1, mode * 3)))
    return [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]


def check(data: bytes) -> None:
    if not data:
        return
    state = ServerState()
    connection = Http2Connection(CONFIG, state, {}, driver.loop)
    transport = driver.connect(connection)
    wire, kinds = frames_of(data[1:])
    for chunk in cut(PREFACE + wire, data[0] & 7):
        if transport.closed:
            break
        connection.data_received(chunk)
        driver.spin(2)
    driver.spin()
    if not transport.closed:
        stream_id = max(connection.h2.highest_inbound_stream_id + 2, 1) | 1
        if stream_id < 2**31:
            mark = len(transport.out)
            request = struct.pack("!I", len(REQUEST_BLOCK))[1:] + b"\x01\x05" + struct.pack("!I", stream_id)
            connection.data_received(request + REQUEST_BLOCK)
            driver.spin()
            answers = read_frames(bytes(transport.out[mark:]))
            answered = any(isinstance(f, (HeadersFrame, RstStreamFrame)) and f.stream_id == stream_id
                           for f in answers)
            goaway = any(isinstance(f, GoAwayFrame) for f in answers)
            assert answered or (goaway and transport.closed), (
                f"stream {stream_id} unanswered, connection open: {answers}")
    if transport.closed and GOAWAY not in kinds:
        # The client's own GOAWAY ends the connection (h2 sends nothing after it); else ours.
        assert any(isinstance(f, GoAwayFrame) for f in read_frames(bytes(transport.out))), \
            "closed without GOAWAY"
    driver.hang_up(transport)
    assert not state.tasks, f"tasks left: {state.tasks}"
    assert not state.connections, "connection left in the registry"
    driver.assert_no_errors()


if __name__ == "__main__":
    driver.main("http2", check)
