"""The WebSocket fast path (websocket_fastpath) against wsproto, across every boundary.

A WebSocketStream runs an echo app on a recording transport; a wsproto client Connection
reads what the server wrote. Each case feeds raw client frames, whole or split.
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.frame_protocol import XorMaskerSimple

from roadrunner.asgi import websocket_fastpath, websocket_stream
from roadrunner.asgi.websocket_fastpath import (
    _unmask_translate,
    encode_frame,
    parse_frames,
    wsproto_idle,
)
from roadrunner.asgi.websocket_stream import WebSocketStream
from roadrunner.config import Config

TEXT, BINARY, CONT, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9
BOUNDARY_LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def frame(
    opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, masked: bool = True,
    key: bytes | None = None, length_bytes: int | None = None,
) -> bytes:
    """A client frame (RFC 6455 §5.2), optionally with a non-minimal length encoding."""
    size = len(payload)
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if masked else 0
    if length_bytes is None:
        length_bytes = 0 if size < 126 else 2 if size < 65536 else 8
    if length_bytes == 0:
        head = bytes((first, mask_bit | size))
    elif length_bytes == 2:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", size)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + bytes(XorMaskerSimple(key).process(bytearray(payload)))


class RecordingTransport:
    """A WebSocketTransport that keeps what the stream wrote."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def send_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.accept_headers = headers

    def send_response_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        raise AssertionError("the echo app accepts")

    def send_response_body(self, data: bytes, end: bool) -> None:
        raise AssertionError("the echo app accepts")

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        return None

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def exchange(
    chunks: list[bytes], *, max_size: int = 16 * 1024 * 1024, extensions: bytes | None = None,
    fast: bool = True,
) -> tuple[list[Event], RecordingTransport]:
    """Feed chunks to an echo WebSocketStream; the server's frames as wsproto client events.

    fast=False switches the fast path off: every byte goes through wsproto (the reference).
    """

    async def main() -> RecordingTransport:
        config = Config(app="tests:app", ws_max_size=max_size, ws_ping_interval=None)
        headers = [(b"sec-websocket-extensions", extensions)] if extensions else []
        scope = {"type": "websocket", "path": "/ws", "headers": headers, "subprotocols": [],
                 "client": ("127.0.0.1", 1)}
        transport = RecordingTransport()
        stream = WebSocketStream(scope, transport, config)
        task = asyncio.ensure_future(stream.run(echo))
        for _ in range(5):
            await asyncio.sleep(0)
        for chunk in chunks:
            stream.feed_data(chunk)
            for _ in range(5):
                await asyncio.sleep(0)
        stream.feed_disconnect()
        await asyncio.wait_for(task, 5)
        return transport

    served = websocket_stream.parse_frames
    if not fast:
        websocket_stream.parse_frames = lambda data, max_size, deliver: 0
    try:
        transport = asyncio.run(main())
    finally:
        websocket_stream.parse_frames = served
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(bytes(transport.written))
    return list(client.events()), transport


def texts(events: list[Event]) -> list[str | bytes]:
    return [bytes(e.data) if isinstance(e, BytesMessage) else e.data
            for e in events if isinstance(e, (TextMessage, BytesMessage))]


def close_code(events: list[Event]) -> int | None:
    codes = [int(e.code) for e in events if isinstance(e, CloseConnection)]
    return codes[0] if codes else None


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


# -- the codec itself ------------------------------------------------------------------------


@pytest.mark.parametrize("unmask", [websocket_fastpath.unmask, _unmask_translate])
@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 125, 1024, 65537])
def test_unmask_matches_wsproto(unmask: Callable[[bytes, bytes], bytes], size: int) -> None:
    payload, key = os.urandom(size), os.urandom(4)
    masked = bytes(XorMaskerSimple(key).process(bytearray(payload)))
    assert bytes(unmask(masked, key)) == payload  # RFC 6455 §5.3: XOR is its own inverse


@pytest.mark.parametrize("size", BOUNDARY_LENGTHS)
@pytest.mark.parametrize("binary", [False, True])
def test_encode_frame_is_what_wsproto_reads(size: int, binary: bool) -> None:
    payload = b"a" * size
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(encode_frame(payload, binary))
    (event,) = client.events()
    assert isinstance(event, BytesMessage if binary else TextMessage)
    assert event.message_finished
    assert (bytes(event.data) if binary else event.data.encode()) == payload
    # RFC 6455 §5.2: 7-bit length up to 125, 16-bit up to 65535, then 64-bit.
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(encode_frame(payload, binary)) == header + size


def test_parse_frames_stops_at_the_first_frame_it_does_not_take() -> None:
    delivered: list[dict[str, object]] = []
    data = frame(TEXT, b"one") + frame(PING, b"p") + frame(TEXT, b"two")
    used = parse_frames(data, 1 << 20, delivered.append)
    assert delivered == [{"type": "websocket.receive", "text": "one"}]
    assert data[used:] == frame(PING, b"p", key=data[used + 2:used + 6]) + data[used + 7:]


def test_wsproto_internals_the_fast_path_reads() -> None:
    conn = Connection(ConnectionType.SERVER)
    assert wsproto_idle(conn)
    conn.receive_data(b"\x81")  # half a header: buffered in wsproto
    list(conn.events())
    assert not wsproto_idle(conn)
    conn = Connection(ConnectionType.SERVER)
    conn.receive_data(frame(TEXT, b"frag", fin=False))  # a fragmented message in progress
    list(conn.events())
    assert not wsproto_idle(conn)
    conn.receive_data(frame(CONT, b"ment"))
    list(conn.events())
    assert wsproto_idle(conn)


# -- the stream: fast path and wsproto together ---------------------------------------------------


@pytest.mark.parametrize("size", BOUNDARY_LENGTHS)
@pytest.mark.parametrize("split", [False, True])
def test_echo_at_length_boundaries(size: int, split: bool) -> None:
    text = ("é" * (size // 2) + "a" * (size % 2))
    binary = os.urandom(size)
    data = frame(TEXT, text.encode()) + frame(BINARY, binary)
    chunks = [data[:3], data[3:size + 5], data[size + 5:]] if split else [data]
    events, _ = exchange(chunks)
    assert texts(events) == [text, binary]
    assert close_code(events) == 1006 or close_code(events) is None


def test_unmasked_client_frame_is_1002() -> None:
    # RFC 6455 §5.1: the server MUST close the connection on an unmasked client frame.
    events, transport = exchange([frame(TEXT, b"ok") + frame(TEXT, b"naked", masked=False)])
    assert texts(events) == ["ok"]
    assert close_code(events) == 1002
    assert transport.closed


@pytest.mark.parametrize("size,length_bytes", [(5, 2), (125, 2), (200, 8), (65535, 8)])
def test_non_minimal_length_is_1002(size: int, length_bytes: int) -> None:
    # RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length.
    events, _ = exchange([frame(BINARY, b"x" * size, length_bytes=length_bytes)])
    assert texts(events) == []
    assert close_code(events) == 1002


def test_length_with_the_top_bit_set_is_1002() -> None:
    data = bytes((0x82, 0xFF)) + struct.pack("!Q", 1 << 63) + os.urandom(4)
    events, _ = exchange([data])
    assert close_code(events) == 1002


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_reserved_bits_without_an_extension_are_1002(rsv: int) -> None:
    events, _ = exchange([frame(TEXT, b"a") + frame(TEXT, b"b", rsv=rsv)])
    assert texts(events) == ["a"]
    assert close_code(events) == 1002


@pytest.mark.parametrize("split", [False, True])
def test_max_size_boundary_is_1009(split: bool) -> None:
    ok, too_big = frame(BINARY, b"x" * 1000), frame(BINARY, b"y" * 1001)
    chunks = byte_by_byte(ok) + byte_by_byte(too_big) if split else [ok + too_big]
    events, _ = exchange(chunks, max_size=1000)
    assert texts(events) == [b"x" * 1000]
    assert close_code(events) == 1009


def test_max_size_counts_a_fragmented_message() -> None:
    data = frame(TEXT, b"a" * 600, fin=False) + frame(CONT, b"b" * 600)
    events, _ = exchange([data], max_size=1000)
    assert close_code(events) == 1009


def test_invalid_utf8_in_one_frame_is_1007() -> None:
    events, _ = exchange([frame(TEXT, b"fine") + frame(TEXT, b"bad \xff here")])
    assert texts(events) == ["fine"]
    assert close_code(events) == 1007


def test_utf8_split_across_frames() -> None:
    euro = "€".encode()  # three bytes, split over two fragments
    valid = frame(TEXT, b"a" + euro[:2], fin=False) + frame(CONT, euro[2:] + b"b")
    events, _ = exchange([valid])
    assert texts(events) == ["a€b"]
    # An invalid sequence split across fragments fails on the fragment that completes it
    # (RFC 6455 §8.1); a truncated one at the end of the message too.
    invalid = frame(TEXT, b"a\xe2\x82", fin=False) + frame(CONT, b"\x28b")
    events, _ = exchange([invalid])
    assert close_code(events) == 1007
    truncated = frame(TEXT, b"a\xe2", fin=False) + frame(CONT, b"\x82")
    events, _ = exchange([truncated])
    assert close_code(events) == 1007


def test_surrogate_code_point_is_1007() -> None:
    events, _ = exchange([frame(TEXT, b"\xed\xa0\x80")])  # U+D800 is not UTF-8 (RFC 3629)
    assert close_code(events) == 1007


def test_control_frame_between_fragments_then_fast_frames() -> None:
    data = (frame(TEXT, b"frag", fin=False) + frame(PING, b"hi") + frame(CONT, b"ment")
            + frame(TEXT, b"after") + frame(PING, b"again") + frame(BINARY, b"\x00\x01"))
    for chunks in ([data], byte_by_byte(data)):
        events, _ = exchange(chunks)
        # Pings are answered as they are parsed, the echoes follow in message order.
        assert texts(events) == ["fragment", "after", b"\x00\x01"]
        assert [e.payload for e in events if isinstance(e, Pong)] == [b"hi", b"again"]
        assert close_code(events) is None  # the connection was healthy until the disconnect


def test_fragmented_control_frame_is_1002() -> None:
    events, _ = exchange([frame(PING, b"x", fin=False)])
    assert close_code(events) == 1002


def test_close_is_answered_and_frames_after_it_are_ignored() -> None:
    close = frame(CLOSE, struct.pack("!H", 1000) + b"bye")
    events, transport = exchange([frame(TEXT, b"a"), close + frame(TEXT, b"late")])
    assert texts(events) == ["a"]
    assert close_code(events) == 1000
    assert transport.closed


def test_permessage_deflate_compressed_and_plain_messages_interleave() -> None:
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(b"squeezed") + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    data = (frame(TEXT, b"plain") + frame(TEXT, body[:-4], rsv=4) + frame(BINARY, b"raw"))
    events, transport = exchange([data], extensions=b"permessage-deflate")
    assert (b"sec-websocket-extensions", b"permessage-deflate") in transport.accept_headers
    # The server compresses its own frames through wsproto: read them with deflate on.
    from wsproto.extensions import PerMessageDeflate

    client_deflate = PerMessageDeflate()
    client_deflate.finalize("permessage-deflate")
    client = Connection(ConnectionType.CLIENT, extensions=[client_deflate])
    client.receive_data(bytes(transport.written))
    assert texts(list(client.events())) == ["plain", "squeezed", b"raw"]
    assert transport.written[0] & 0x40  # RSV1: the first echo is compressed (RFC 7692 §6)


def test_ping_while_fast_frames_flow() -> None:
    events, _ = exchange([frame(TEXT, b"1"), frame(PING, b"p"), frame(TEXT, b"2")])
    assert [type(e) for e in events if not isinstance(e, CloseConnection)] == [
        TextMessage, Pong, TextMessage]
    assert not any(isinstance(e, Ping) for e in events)


def test_common_frames_bypass_wsproto_and_odd_ones_reach_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fed: list[bytes] = []
    receive_data = Connection.receive_data

    def spy(self: Connection, data: bytes | None) -> None:
        if not self.client and data:  # (wsproto's constructor feeds b"")
            fed.append(bytes(data))
        receive_data(self, data)

    monkeypatch.setattr(Connection, "receive_data", spy)
    second = frame(PING, b"p") + frame(TEXT, b"c")
    events, _ = exchange([frame(TEXT, b"a") + frame(BINARY, b"b"), second, frame(TEXT, b"d")])
    assert texts(events) == ["a", b"b", "c", "d"]
    # Only the chunk starting with the ping went through wsproto; it was idle again for "d".
    assert fed == [second]


# -- parity with wsproto alone: a data frame that belongs to no message ---------------------------


def cont_head(length: int, fin: bool = False) -> bytes:
    """A masked continuation frame header declaring a 64-bit length (RFC 6455 §5.2), zero key."""
    return bytes(((0x80 if fin else 0) | CONT, 0xFF)) + struct.pack("!Q", length) + bytes(4)


# `make fuzz` (tests/fuzz/fuzz_websocket.py, option byte 0: no deflate, ws_max_size 125, one
# read): a fast-path text frame of 5 bytes, then a continuation (FIN 0) declaring ~2**55 bytes
# of which 125 arrive. Served: 1002; wsproto alone: 1009 (the 5 bytes of the finished message
# were still counted against the continuation).
FUZZ_STRAY_CONTINUATION = bytes.fromhex(
    "818500000100070000000000ff008185000001000700000000" + "7a" * 65 + "807a" + "7a" * 16
    + "7eff00ff8185040000ff00ff81850400000000ff007eff00ff8185040000ff00ff81850400000000ff00"
)
assert len(FUZZ_STRAY_CONTINUATION) == 150

FRAGMENTED_100 = frame(TEXT, b"f" * 50, fin=False) + frame(CONT, b"g" * 50)  # through wsproto

STRAY_CASES = {
    "fuzz-input": [FUZZ_STRAY_CONTINUATION],
    # §5.4: a continuation with no message in progress; what arrived of it fits the limit.
    "fast-then-stray-64bit": [frame(TEXT, b"abcde") + cont_head(1 << 55) + b"z" * 125],
    "fast-then-stray-fin": [frame(TEXT, b"abcde") + frame(CONT, b"z" * 125)],
    # ... more of it than the limit arrived in the same read: still no message to count it in.
    "fast-then-stray-over-limit": [frame(TEXT, b"abcde") + cont_head(1 << 20) + b"z" * 200],
    # §5.2: a 64-bit length with the most significant bit set, on a stray continuation.
    "fast-then-stray-top-bit": [frame(TEXT, b"abcde") + cont_head(1 << 63) + b"z" * 10],
    # A message assembled by wsproto, then a stray continuation (wsproto alone, both ways).
    "fragmented-then-stray": [FRAGMENTED_100 + frame(CONT, b"z" * 100)],
    # wsproto counted 100, the fast path took the next message: the count it left was stale.
    "fragmented-fast-then-stray": [FRAGMENTED_100, frame(TEXT, b"abcde") + frame(CONT, b"z" * 100)],
    "fragmented-fast-then-stray-64bit": [
        FRAGMENTED_100, frame(BINARY, b"abcde") + cont_head(1 << 40) + b"z" * 100],
    # §5.4: a new data frame inside a fragmented message, more of it than the limit in one read.
    "nested-message-over-limit": [frame(TEXT, b"a", fin=False) + frame(BINARY, b"b" * 200)],
}


def served_and_plain(
    chunks: list[bytes], max_size: int, extensions: bytes | None
) -> tuple[list[Event], list[Event]]:
    """The client's view of the same reads as served and through wsproto alone."""
    from wsproto.extensions import PerMessageDeflate

    def events_of(transport: RecordingTransport) -> list[Event]:
        client_deflate = PerMessageDeflate()
        client_deflate.finalize("permessage-deflate")  # the server compresses its echoes
        client = Connection(ConnectionType.CLIENT, extensions=[client_deflate] if extensions else [])
        client.receive_data(bytes(transport.written))
        return list(client.events())

    served = exchange(chunks, max_size=max_size, extensions=extensions)[1]
    plain = exchange(chunks, max_size=max_size, extensions=extensions, fast=False)[1]
    return events_of(served), events_of(plain)


@pytest.mark.parametrize("chunks", list(STRAY_CASES.values()), ids=list(STRAY_CASES))
@pytest.mark.parametrize("cut", ["as-read", "per-byte"])
@pytest.mark.parametrize("extensions", [None, b"permessage-deflate"])
def test_frame_outside_a_message_is_1002_with_and_without_the_fast_path(
    chunks: list[bytes], cut: str, extensions: bytes | None
) -> None:
    # RFC 6455 §5.4 / §7.4.1: a fragment that continues no message (or starts one inside
    # another) is a protocol error, 1002, whatever came before it and however much of it
    # arrived; not 1009, it is no message too big.
    if cut == "per-byte":
        chunks = byte_by_byte(b"".join(chunks))
    served, plain = served_and_plain(chunks, 125, extensions)
    assert served == plain
    assert close_code(served) == 1002
    assert texts(served)[-1:] in ([], ["\x07\x00\x01\x00\x00"], ["abcde"], [b"abcde"],
                                  ["f" * 50 + "g" * 50])


@pytest.mark.parametrize("extensions", [None, b"permessage-deflate"])
def test_size_limit_still_counts_continuations_inside_a_message(extensions: bytes | None) -> None:
    # The limit is per message (RFC 6455 §7.4.1 1009): each message starts from zero, the
    # continuations of one add up, whether the previous message went through the fast path.
    ok = frame(TEXT, b"a" * 125)
    over = frame(TEXT, b"b" * 60, fin=False) + frame(PING, b"p") + frame(CONT, b"c" * 66)
    for chunks in ([ok, over], [ok + over], byte_by_byte(ok + over)):
        served, plain = served_and_plain(chunks, 125, extensions)
        assert served == plain
        assert texts(served) == ["a" * 125]
        assert close_code(served) == 1009
