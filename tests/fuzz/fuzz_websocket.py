"""WebSocket: roadrunner's fast path (asgi/websocket_fastpath.py) against plain wsproto.

The same client-to-server bytes, cut into the same chunks, go through two WebSocketStreams:
one as served (fast path first, wsproto for the rest) and one with the fast path switched
off (every byte through wsproto). The app reads every message as it arrives. Both must
deliver the same messages, write the same bytes back (pongs, Close frames) and end with
the same close code.

Input: byte 0 picks the options (bit 0: the client offers permessage-deflate; bits 1-2:
the message size limit; bits 3-7: how the rest is cut into chunks); the rest is the wire.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import driver  # noqa: E402

with driver.instrumented():
    from roadrunner.asgi import websocket_stream
    from roadrunner.asgi.websocket_stream import Phase, WebSocketStream
    from roadrunner.config import Config

MAX_SIZES = (125, 1000, 65536, 1 << 20)
CONFIGS = {size: Config("tests:app", ws_max_size=size, ws_ping_interval=None) for size in MAX_SIZES}
fast_parse_frames = websocket_stream.parse_frames


def no_fast_path(data: bytes, max_size: int, deliver: Any) -> int:
    return 0


class RecordingTransport:
    """The WebSocketTransport of the h1/h2/h3 connections, in memory."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.aborted = False

    def send_accept(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.accept_headers = headers

    def send_response_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        raise AssertionError("the handshake is accepted")

    def send_response_body(self, data: bytes, end: bool) -> None:
        raise AssertionError("the handshake is accepted")

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written += data

    async def drain(self) -> None:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True


def receive_now(stream: WebSocketStream) -> dict[str, Any] | None:
    """The app's `await receive()`, when it completes without waiting; None when it would wait."""
    coro = stream.receive()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    stream.waiter = None
    return None


def read_all(stream: WebSocketStream, messages: list[dict[str, Any]]) -> None:
    while stream.queue or stream.failure_code is not None:
        message = receive_now(stream)
        if message is None:
            return
        messages.append(message)
        if message["type"] == "websocket.disconnect":
            return


def serve(chunks: list[bytes], deflate: bool, max_size: int, fast: bool) -> tuple[Any, ...]:
    headers = [(b"sec-websocket-extensions", b"permessage-deflate")] if deflate else []
    scope = {"type": "websocket", "path": "/ws", "headers": headers, "subprotocols": [],
             "client": driver.PEER, "query_string": b""}
    transport = RecordingTransport()
    websocket_stream.parse_frames = fast_parse_frames if fast else no_fast_path
    try:
        stream = WebSocketStream(scope, transport, CONFIGS[max_size])
        stream.connect_delivered = True
        stream.accept({"type": "websocket.accept"})
        messages: list[dict[str, Any]] = []
        for chunk in chunks:
            if transport.closed:
                break
            stream.feed_data(chunk)
            read_all(stream, messages)
        stream.feed_disconnect()
        read_all(stream, messages)
        if stream.phase is not Phase.CLOSED or not messages or messages[-1]["type"] != "websocket.disconnect":
            messages.append(receive_now(stream) or {})
    finally:
        websocket_stream.parse_frames = fast_parse_frames
    return (messages, stream.close_code, bytes(transport.written), transport.closed,
            transport.aborted, transport.accept_headers)


def cut(wire: bytes, seed: int) -> list[bytes]:
    if seed == 0 or len(wire) < 2:
        return [wire]
    if seed == 1:
        return [wire[i:i + 1] for i in range(len(wire))]
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, len(wire)), min(len(wire) - 1, seed % 7 + 1)))
    return [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]


def check(data: bytes) -> None:
    if not data:
        return
    options, wire = data[0], data[1:]
    deflate = bool(options & 1)
    max_size = MAX_SIZES[(options >> 1) & 3]
    chunks = cut(wire, options >> 3)
    fast = serve(chunks, deflate, max_size, fast=True)
    plain = serve(chunks, deflate, max_size, fast=False)
    assert fast == plain, f"fast path {fast!r}\n      wsproto {plain!r}"
    driver.assert_no_errors()


if __name__ == "__main__":
    driver.main("websocket", check)
