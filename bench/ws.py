"""`python -m bench.ws`: a WebSocket echo load generator, and the harness's `ws` driver.

A minimal RFC 6455 client on asyncio protocols (uvloop when installed), so the client core spends
its time on the wire rather than in a client library: each connection sends one masked text
message, awaits its echo, checks it, and repeats until the deadline. It prints one JSON line
that `WsDriver.parse` reads; a "request" in the harness's tables is one message echoed.

    python -m bench.ws --url ws://127.0.0.1:8000/ws --connections 16 --size 1024 --duration 6
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from bench.http1 import Response
from bench.results import LoadResult
from bench.scenarios import LoadScenario, Request

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CLOSE_NORMAL = 1000


class ProtocolError(ValueError):
    """The server broke RFC 6455 (or answered the handshake with something else)."""


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2, item 5.4)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def handshake_request(authority: str, path: str, key: bytes) -> bytes:
    """The opening handshake (RFC 6455 §4.1)."""
    return (f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode('ascii')}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode("latin-1")


def parse_handshake(buffer: bytes, key: bytes) -> int | None:
    """Validate the server's handshake response; the bytes it used, or None if incomplete.

    RFC 6455 §4.1 (client requirements 1-4): status 101, `Upgrade: websocket`, `Connection`
    containing `upgrade`, and the Sec-WebSocket-Accept derived from our key.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    status_line, *lines = buffer[:end].split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or parts[1] != b"101":
        raise ProtocolError(f"handshake answered {status_line.decode('latin-1')!r}")
    fields: dict[bytes, bytes] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if fields.get(b"upgrade", b"").lower() != b"websocket":
        raise ProtocolError("handshake response without Upgrade: websocket")
    if b"upgrade" not in fields.get(b"connection", b"").lower():
        raise ProtocolError("handshake response without Connection: upgrade")
    if fields.get(b"sec-websocket-accept") != accept_key(key):
        raise ProtocolError("wrong Sec-WebSocket-Accept")
    return end + 4


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR payload with the 4-byte masking key, repeated (RFC 6455 §5.3), as one big integer."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[:len(payload)]
    size = len(payload)
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")


def encode_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One final client frame: every client frame is masked (RFC 6455 §5.1, §5.2)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    return head + key + mask(payload, key)


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes


def parse_frame(buffer: bytes | bytearray, start: int = 0) -> tuple[Frame, int] | None:
    """One server frame at buffer[start:]: (frame, end offset), or None if incomplete.

    A server must not mask its frames (RFC 6455 §5.1) and control frames carry at most 125
    bytes and are never fragmented (§5.5); both are protocol errors here.
    """
    if len(buffer) - start < 2:
        return None
    first, second = buffer[start], buffer[start + 1]
    if second & 0x80:
        raise ProtocolError("the server masked a frame")
    opcode = first & 0x0F
    size = second & 0x7F
    pos = start + 2
    if size == 126:
        if len(buffer) < pos + 2:
            return None
        size = int.from_bytes(buffer[pos:pos + 2], "big")
        pos += 2
    elif size == 127:
        if len(buffer) < pos + 8:
            return None
        size = int.from_bytes(buffer[pos:pos + 8], "big")
        pos += 8
    fin = bool(first & 0x80)
    if opcode >= OP_CLOSE and (size > 125 or not fin):
        raise ProtocolError("oversized or fragmented control frame")
    if len(buffer) < pos + size:
        return None
    return Frame(fin, opcode, bytes(buffer[pos:pos + size])), pos + size


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), int(fraction * len(ordered) + 0.999999)))
    return ordered[rank - 1]


@dataclass
class Tally:
    """What all connections of one run did."""

    messages: int = 0
    mismatched: int = 0
    failed_connections: int = 0


class EchoClient(asyncio.Protocol):
    """One connection: handshake, then send / await echo / repeat until the deadline."""

    def __init__(self, authority: str, path: str, message: bytes, deadline: float,
                 limit: int | None, tally: Tally, latencies: list[float],
                 done: asyncio.Future[None]) -> None:
        self.key = base64.b64encode(os.urandom(16))
        self.request = handshake_request(authority, path, self.key)
        self.message = message
        self.deadline = deadline
        self.remaining = limit
        self.tally = tally
        self.latencies = latencies
        self.done = done
        self.buffer = bytearray()
        self.fragments: list[bytes] = []
        self.open = False
        self.last_echo = b""
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        self.transport.write(self.request)

    def send_next(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(encode_frame(OP_TEXT, self.message, os.urandom(4)))

    def finish(self, failed: bool = False) -> None:
        if self.done.done():
            return
        if failed:
            self.tally.failed_connections += 1
        elif self.transport is not None and not self.transport.is_closing():
            # RFC 6455 §7.1.2: start the closing handshake; the server closes TCP after its reply.
            code = CLOSE_NORMAL.to_bytes(2, "big")
            self.transport.write(encode_frame(OP_CLOSE, code, os.urandom(4)))
        self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buffer += data
        try:
            if not self.open:
                used = parse_handshake(bytes(self.buffer), self.key)
                if used is None:
                    return
                del self.buffer[:used]
                self.open = True
                self.send_next()
            self.read_frames()
        except ProtocolError:
            self.finish(failed=True)
            if self.transport is not None:
                self.transport.close()

    def read_frames(self) -> None:
        pos = 0
        while not self.done.done():
            parsed = parse_frame(self.buffer, pos)
            if parsed is None:
                break
            frame, pos = parsed
            self.on_frame(frame)
        del self.buffer[:pos]

    def on_frame(self, frame: Frame) -> None:
        assert self.transport is not None
        if frame.opcode == OP_PING:  # RFC 6455 §5.5.3: answer with the same payload
            self.transport.write(encode_frame(OP_PONG, frame.payload, os.urandom(4)))
            return
        if frame.opcode == OP_CLOSE:
            self.finish(failed=True)  # the server closed in the middle of the run
            return
        if frame.opcode == OP_PONG:
            return
        self.fragments.append(frame.payload)
        if not frame.fin:
            return
        echoed = b"".join(self.fragments)
        self.fragments.clear()
        self.last_echo = echoed
        self.latencies.append(time.perf_counter() - self.sent_at)
        self.tally.messages += 1
        if echoed != self.message:
            self.tally.mismatched += 1
        if self.remaining is not None:
            self.remaining -= 1
        if (self.remaining is not None and self.remaining <= 0) or \
                time.perf_counter() >= self.deadline:
            self.finish()
        else:
            self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(failed=True)


async def run_load(host: str, port: int, path: str, message: bytes, connections: int,
                   duration: float, limit: int | None = None) -> LoadResult:
    """Echo `message` over `connections` WebSockets for `duration` s (or `limit` each)."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    latencies: list[float] = []
    start = time.perf_counter()
    cpu_start = time.process_time()
    deadline = start + duration
    clients: list[EchoClient] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        client = EchoClient(f"{host}:{port}", path, message, deadline, limit, tally, latencies,
                            done)
        try:
            await loop.create_connection(lambda c=client: c, host, port)  # type: ignore[misc]
        except OSError:
            tally.failed_connections += 1
            continue
        clients.append(client)
    if clients:
        await asyncio.wait([c.done for c in clients], timeout=duration + 10)
    elapsed = time.perf_counter() - start
    for client in clients:
        if not client.done.done():  # no echo within the grace period: count it as failed
            client.finish(failed=True)
        if client.transport is not None:
            client.transport.close()
    latencies.sort()
    return LoadResult(
        requests=tally.messages, duration_s=elapsed,
        requests_per_s=tally.messages / elapsed if elapsed > 0 else 0.0,
        p50_s=percentile(latencies, 0.50), p99_s=percentile(latencies, 0.99),
        socket_errors=tally.failed_connections, bad_responses=tally.mismatched,
        client_cpu_seconds=time.process_time() - cpu_start,
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def run_sync(host: str, port: int, path: str, message: bytes, connections: int,
             duration: float, limit: int | None = None) -> LoadResult:
    """run_load on a fresh (uv)loop."""
    loop = _new_loop()
    try:
        return loop.run_until_complete(
            run_load(host, port, path, message, connections, duration, limit))
    finally:
        loop.close()


async def echo_once(host: str, port: int, path: str, message: bytes, timeout: float) -> bytes:
    """Open one WebSocket, send `message`, return what came back (ConnectionError if nothing)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    deadline = time.perf_counter() + timeout
    client = EchoClient(f"{host}:{port}", path, message, deadline, 1, Tally(), [], done)
    await loop.create_connection(lambda: client, host, port)
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout)
    finally:
        if client.transport is not None:
            client.transport.close()
    if client.tally.failed_connections or not client.tally.messages:
        raise ConnectionError(f"no WebSocket echo from {path}")
    return client.last_echo


class WsDriver:
    """`python -m bench.ws` as a subprocess: one process, one event loop, N connections."""

    executable = sys.executable

    def command(
        self, scenario: LoadScenario, base_url: str, duration: float, workdir: Path
    ) -> list[str]:
        message = workdir / f"{scenario.name}.message"
        message.write_bytes(scenario.request.body)
        url = "ws" + base_url.removeprefix("http") + scenario.request.path
        return [self.executable, "-m", "bench.ws", "--url", url,
                "--connections", str(scenario.connections), "--duration", f"{duration:g}",
                "--message-file", str(message)]

    def parse(self, output: str) -> LoadResult:
        return parse_output(output)

    @staticmethod
    def fetch(host: str, port: int, request: Request, timeout: float = 5.0) -> Response:
        """The harness's pre-run check: one echo of the scenario's message.

        A completed handshake and echo read as status 200 with the echoed bytes as the body, so
        the generic check compares them with the scenario's expect_body.
        """
        loop = _new_loop()
        try:
            echoed = loop.run_until_complete(
                echo_once(host, port, request.path, request.body, timeout))
        finally:
            loop.close()
        return Response(200, (), echoed, len(echoed))


def parse_output(output: str) -> LoadResult:
    """The JSON line `main` prints; ValueError if there is none."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return LoadResult(**json.loads(line))
    raise ValueError(f"bench.ws printed no result:\n{output}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ws", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="ws://HOST:PORT/PATH")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds")
    parser.add_argument("--size", type=int, default=1024,
                        help="text message size in bytes (ignored with --message-file)")
    parser.add_argument("--message-file", type=Path, help="send this file's bytes as text")
    parser.add_argument("--messages", type=int, help="stop each connection after this many")
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "ws" or url.hostname is None or url.port is None:
        parser.error("--url must be ws://HOST:PORT/PATH")
    message = args.message_file.read_bytes() if args.message_file else b"x" * args.size
    result = run_sync(url.hostname, url.port, url.path or "/", message, args.connections,
                      args.duration, args.messages)
    print(json.dumps(asdict(result)))
    return 0 if result.requests else 1


if __name__ == "__main__":
    sys.exit(main())
