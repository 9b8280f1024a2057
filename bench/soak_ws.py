"""The soak's WebSocket churn: N connections opened and closed, a bounded number at a time.

Each connection is bench.ws's raw RFC 6455 client cut to the handshake and the close: send the
upgrade request, read the 101, send a masked close frame, read the server's close, and wait for
the server to close TCP (RFC 6455 §7.1.1: the server closes first, so TIME_WAIT stays there and
the client's ephemeral ports are not used up).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from dataclasses import dataclass
from typing import cast

from bench.ws import (
    CLOSE_NORMAL,
    OP_CLOSE,
    ProtocolError,
    encode_frame,
    handshake_request,
    parse_frame,
    parse_handshake,
)


def close_frame(code: int, key: bytes) -> bytes:
    """A masked client close frame carrying `code` (RFC 6455 §5.5.1: 2-byte code, big-endian)."""
    return encode_frame(OP_CLOSE, code.to_bytes(2, "big"), key)


def close_code(payload: bytes) -> int | None:
    """The status code of a close frame's payload; None when it carries none (§5.5.1)."""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    return int.from_bytes(payload[:2], "big") if payload else None


class OpenClose(asyncio.Protocol):
    """One WebSocket: handshake, close handshake, then the server's TCP close ends it."""

    def __init__(self, authority: str, path: str, done: asyncio.Future[bool]) -> None:
        self.key = base64.b64encode(os.urandom(16))
        self.request = handshake_request(authority, path, self.key)
        self.done = done
        self.buffer = bytearray()
        self.open = False
        self.closed_by_server: int | None = None  # the code of the server's close frame
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self.advance()
        except ProtocolError:
            self.fail()

    def advance(self) -> None:
        assert self.transport is not None
        if not self.open:
            used = parse_handshake(bytes(self.buffer), self.key)
            if used is None:
                return
            del self.buffer[:used]
            self.open = True
            self.transport.write(close_frame(CLOSE_NORMAL, os.urandom(4)))
        parsed = parse_frame(self.buffer)
        while parsed is not None:
            frame, end = parsed
            del self.buffer[:end]
            if frame.opcode == OP_CLOSE:
                self.closed_by_server = close_code(frame.payload) or 0
            parsed = parse_frame(self.buffer)

    def fail(self) -> None:
        if not self.done.done():
            self.done.set_result(False)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(exc is None and self.closed_by_server == CLOSE_NORMAL)


@dataclass(frozen=True)
class ChurnResult:
    """What a churn run did."""

    completed: int  # opened, closed with 1000 by both sides, TCP closed by the server
    failed: int
    duration_s: float


async def open_close(host: str, port: int, path: str, timeout: float) -> bool:
    """One connection through its whole life; False on any error or after `timeout` s."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()
    client = OpenClose(f"{host}:{port}", path, done)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: client, host, port), timeout)
        return await asyncio.wait_for(done, timeout)
    except (OSError, asyncio.TimeoutError):
        client.fail()
        return False


async def churn(host: str, port: int, path: str, count: int, concurrency: int,
                timeout: float = 10.0) -> ChurnResult:
    """Open and close `count` WebSockets, `concurrency` at a time (one worker per slot)."""
    outcomes = [0, 0]  # completed, failed
    start = time.perf_counter()

    async def worker(share: int) -> None:
        for _ in range(share):
            outcomes[0 if await open_close(host, port, path, timeout) else 1] += 1

    shares = [count // concurrency + (1 if i < count % concurrency else 0)
              for i in range(concurrency)]
    await asyncio.gather(*(worker(share) for share in shares if share))
    return ChurnResult(outcomes[0], outcomes[1], time.perf_counter() - start)
