"""An HTTP/3 load generator on aioquic: N QUIC connections x M concurrent request streams.

    python -m bench.h3client --port 8443 --path /hello --connections 4 --streams 16 --duration 6

Each stream slot sends its request as soon as the previous response on it ended (a closed loop,
like wrk and h2load). Prints one JSON object: completed and failed requests, requests/s,
latency percentiles, response body bytes and the client's own CPU seconds (the client is Python
too: a client CPU near the measured duration means the client, not the server, was the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

WINDOW = 16 * 1024 * 1024  # client flow-control credit, the same for every server
# The client's UDP receive buffer. The default (net.core.rmem_default, 208 KiB) holds about 90
# datagrams: a server that sends a congestion window in one burst (GSO) overflows it while this
# Python client is still decrypting the previous burst, the kernel drops the rest (RcvbufErrors
# in /proc/net/snmp) and the server halves its window for every loss. The kernel caps the value
# at net.core.rmem_max.
RECEIVE_BUFFER = 4 * 1024 * 1024


@dataclass
class Answer:
    """One response as the client saw it."""

    status: int = 0
    length: int = 0  # body bytes received
    body: bytearray = field(default_factory=bytearray)  # kept only for the check request


class StreamFailed(Exception):
    """The stream was reset or the connection closed before the response ended."""


class H3Client(QuicConnectionProtocol):
    """A QUIC connection speaking HTTP/3, with one future per open request stream."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.pending: dict[int, tuple[Answer, asyncio.Future[Answer]]] = {}
        self.keep_body = False
        self.closed = False
        self.received = 0  # response body bytes on every stream, counted as they arrive
        self.transmit_handle: asyncio.Handle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            except OSError:  # pragma: no cover - the default buffer still works, only smaller
                pass
        super().connection_made(transport)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # aioquic's protocol builds and sends packets after every datagram; once per event-loop
        # iteration is enough (ACKs wait for aioquic's ack timer anyway) and halves the client's
        # CPU per downloaded byte, so the client is less often the limit.
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        if self.transmit_handle is None:
            self.transmit_handle = self._loop.call_soon(self.transmit_once)

    def transmit_once(self) -> None:
        self.transmit_handle = None
        self.transmit()

    async def request(self, authority: str, method: str, path: str,
                      headers: Sequence[tuple[str, str]], body: bytes) -> Answer:
        """Send one request on a new stream and wait until its response ends."""
        stream_id = self._quic.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":scheme", b"https"),
                  (b":authority", authority.encode()), (b":path", path.encode())]
        fields += [(name.lower().encode(), value.encode()) for name, value in headers]
        if body:
            fields.append((b"content-length", str(len(body)).encode()))
        self.h3.send_headers(stream_id, fields, end_stream=not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=True)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.pending[stream_id] = (Answer(), future)
        self.transmit()
        return await future

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            self._fail(event.stream_id, f"stream reset, error {event.error_code}")
        elif isinstance(event, ConnectionTerminated):
            self.closed = True
            for stream_id in list(self.pending):
                self._fail(stream_id, f"connection closed, error {event.error_code}")
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        entry = self.pending.get(event.stream_id)
        if entry is None:
            return
        answer, future = entry
        if isinstance(event, HeadersReceived):
            for name, value in event.headers:
                if name == b":status":
                    answer.status = int(value)
        else:
            answer.length += len(event.data)
            self.received += len(event.data)
            if self.keep_body:
                answer.body += event.data
        if event.stream_ended:
            del self.pending[event.stream_id]
            if not future.done():
                future.set_result(answer)

    def _fail(self, stream_id: int, reason: str) -> None:
        entry = self.pending.pop(stream_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(StreamFailed(reason))


@dataclass(frozen=True)
class LoadSpec:
    """What to load: one request repeated on connections x streams for a duration."""

    host: str
    port: int
    path: str = "/"
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    connections: int = 1
    streams: int = 1
    duration: float = 5.0


@dataclass
class Tally:
    """What the load run counted."""

    completed: int = 0  # responses that ended (any status)
    failed: int = 0  # streams reset or cut off by a closed connection
    bad: int = 0  # status other than 2xx/3xx
    body_bytes: int = 0  # bodies of the completed responses
    window_bytes: int = 0  # body bytes received during the measured window
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def client_configuration() -> QuicConfiguration:
    """HTTP/3 ALPN, no certificate verification (the bench certificate is self-signed)."""
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    configuration.verify_mode = ssl.CERT_NONE
    configuration.max_data = WINDOW
    configuration.max_stream_data = WINDOW
    return configuration


async def _slot(client: H3Client, spec: LoadSpec, deadline: float, tally: Tally) -> None:
    authority = f"{spec.host}:{spec.port}"
    while time.monotonic() < deadline and not client.closed:
        start = time.monotonic()
        try:
            answer = await client.request(authority, spec.method, spec.path, spec.headers,
                                          spec.body)
        except StreamFailed as exc:
            tally.failed += 1
            if len(tally.errors) < 5:
                tally.errors.append(str(exc))
            continue
        end = time.monotonic()
        if end > deadline:
            return  # finished after the measured window: not counted
        tally.completed += 1
        tally.body_bytes += answer.length
        tally.latencies.append(end - start)
        if not 200 <= answer.status < 400:
            tally.bad += 1


async def _connection(spec: LoadSpec, connected: asyncio.Event, start: asyncio.Event,
                      deadline_box: list[float], tally: Tally, clients: list[H3Client]) -> None:
    async with connect(spec.host, spec.port, configuration=client_configuration(),
                       create_protocol=H3Client) as client:
        assert isinstance(client, H3Client)
        clients.append(client)
        connected.set()
        await start.wait()
        await asyncio.gather(*(_slot(client, spec, deadline_box[0], tally)
                               for _ in range(spec.streams)))


async def _connected_or_done(connected: asyncio.Event, task: asyncio.Future[None]) -> None:
    waiter = asyncio.ensure_future(connected.wait())
    pending: set[asyncio.Future[Any]] = {waiter, task}
    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Connect every connection first, then load for spec.duration; the JSON summary."""
    tally = Tally()
    start = asyncio.Event()
    deadline_box = [0.0]
    connected = [asyncio.Event() for _ in range(spec.connections)]
    clients: list[H3Client] = []
    tasks = [asyncio.ensure_future(_connection(spec, event, start, deadline_box, tally, clients))
             for event in connected]
    # Connections handshake before the clock starts (wrk and h2load also exclude connecting).
    await asyncio.gather(*(_connected_or_done(e, t) for e, t in zip(connected, tasks, strict=True)))
    cpu_before, began = time.process_time(), time.monotonic()
    deadline_box[0] = began + spec.duration
    start.set()
    # Throughput counts the bytes that arrived inside the window, finished responses or not.
    received_before = sum(c.received for c in clients)
    await asyncio.wait(tasks, timeout=spec.duration)
    tally.window_bytes = sum(c.received for c in clients) - received_before
    cpu = time.process_time() - cpu_before
    results = await asyncio.gather(*tasks, return_exceptions=True)
    measured = min(max(time.monotonic() - began, 1e-9), spec.duration)
    for result in results:
        if isinstance(result, BaseException):
            tally.errors.append(f"connection: {result!r}")
    return summary(tally, measured, cpu)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (0 < fraction <= 1); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def summary(tally: Tally, duration: float, client_cpu: float) -> dict[str, Any]:
    """The JSON summary the driver parses."""
    return {
        "completed": tally.completed, "failed": tally.failed, "bad": tally.bad,
        "duration_s": duration, "requests_per_s": tally.completed / duration,
        "body_bytes": tally.body_bytes, "bytes_per_s": tally.window_bytes / duration,
        "p50_s": percentile(tally.latencies, 0.50), "p99_s": percentile(tally.latencies, 0.99),
        "client_cpu_s": client_cpu, "errors": tally.errors,
    }


async def fetch_one(spec: LoadSpec, timeout: float = 10.0) -> Answer:
    """One request on a fresh connection, body kept (the harness's check)."""
    async with connect(spec.host, spec.port, configuration=client_configuration(),
                       create_protocol=H3Client) as client:
        assert isinstance(client, H3Client)
        client.keep_body = True
        return await asyncio.wait_for(client.request(
            f"{spec.host}:{spec.port}", spec.method, spec.path, spec.headers, spec.body), timeout)


def parse_args(argv: Sequence[str] | None) -> tuple[LoadSpec, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench.h3client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    parser.add_argument("--body-file", help="send this file as each request's body")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams per connection")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    args = parser.parse_args(argv)
    headers = tuple((name.strip(), value.strip())
                    for name, _, value in (h.partition(":") for h in args.header))
    body = b""
    if args.body_file:
        with open(args.body_file, "rb") as file:
            body = file.read()
    if args.connections < 1 or args.streams < 1 or args.duration <= 0:
        parser.error("--connections, --streams and --duration must be positive")
    return LoadSpec(args.host, args.port, args.path, args.method, headers, body,
                    args.connections, args.streams, args.duration), args


def main(argv: Sequence[str] | None = None) -> int:
    spec, _ = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed with the bench
        result = asyncio.run(run_load(spec))
    else:
        result = uvloop.run(run_load(spec))
    print(json.dumps(result))
    return 0 if result["completed"] or result["bytes_per_s"] else 1


if __name__ == "__main__":
    sys.exit(main())
