"""The idle-connection client: N keep-alive connections, one request each, then held open.

HTTP/1.1, or HTTP/2 cleartext with prior knowledge (RFC 9113 §3.3): the h2 library frames the
client side, one GET per connection on its own stream, the connection held after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

from bench.http1 import encode_request, parse_response
from bench.results import IdleSample
from bench.scenarios import Request

OPEN_TIMEOUT = 20.0  # seconds for one connection's connect and first answer (granian, h2c,
# 5,000 connections: one never answered)

@dataclass
class Connection:
    """One held connection (and, on HTTP/2, the client's connection state)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h2: h2.connection.H2Connection | None = None
    streams: list[int] = field(default_factory=list)


async def _exchange(connection: Connection, payload: bytes) -> bool:
    """Send one HTTP/1.1 request; True once a complete 200 response has been read."""
    connection.writer.write(payload)
    buffer = b""
    while True:
        chunk = await connection.reader.read(65536)
        if not chunk:
            return False
        buffer += chunk
        response = parse_response(buffer)
        if response is not None:
            return response.status == 200


async def _exchange_h2(connection: Connection, request: Request, authority: str) -> bool:
    """One GET on a new stream of the HTTP/2 connection; True once it ended with a 200."""
    conn = connection.h2
    assert conn is not None
    stream = conn.get_next_available_stream_id()
    headers = [(":method", request.method), (":scheme", "http"), (":authority", authority),
               (":path", request.path), *request.headers]
    conn.send_headers(stream, headers, end_stream=True)
    connection.writer.write(conn.data_to_send())
    status = None
    while True:
        chunk = await connection.reader.read(65536)
        if not chunk:
            return False
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                status = dict(event.headers).get(b":status")
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                connection.writer.write(conn.data_to_send())  # SETTINGS ACK, WINDOW_UPDATE
                return status == b"200"
            elif isinstance(event, (h2.events.ConnectionTerminated, h2.events.StreamReset)):
                return False
        connection.writer.write(conn.data_to_send())


class Client:
    """Opens connections of one protocol and makes a request on them."""

    def __init__(self, host: str, port: int, request: Request, protocol: str) -> None:
        if protocol not in ("h1", "h2c"):
            raise ValueError(f"idle client speaks h1 or h2c, not {protocol}")
        self.host, self.port, self.request, self.protocol = host, port, request, protocol
        self.authority = f"{host}:{port}"
        self.payload = encode_request(request, self.authority)

    async def request_on(self, connection: Connection) -> bool:
        if connection.h2 is not None:
            return await _exchange_h2(connection, self.request, self.authority)
        return await _exchange(connection, self.payload)

    async def open(self, gate: asyncio.Semaphore) -> Connection:
        async with gate:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), OPEN_TIMEOUT)
            connection = Connection(reader, writer)
            if self.protocol == "h2c":
                connection.h2 = h2.connection.H2Connection(
                    h2.config.H2Configuration(client_side=True, header_encoding=None))
                connection.h2.initiate_connection()  # preface and SETTINGS (RFC 9113 §3.4)
            try:
                answered = await asyncio.wait_for(self.request_on(connection), OPEN_TIMEOUT)
            except asyncio.TimeoutError:
                answered = False
            if not answered:
                writer.close()
                raise ConnectionError(f"idle-connection request failed (or took over "
                                      f"{OPEN_TIMEOUT:g} s)")
            return connection

    async def still_open(self, connection: Connection, gate: asyncio.Semaphore) -> bool:
        async with gate:
            try:
                return await asyncio.wait_for(self.request_on(connection), 10)
            except (OSError, asyncio.TimeoutError):
                return False


async def _settled_rss(read_rss: Callable[[], int], interval: float = 0.25,
                       attempts: int = 20) -> int:
    """RSS once two readings in a row agree within 0.5 % (the server has finished its work)."""
    previous = read_rss()
    for _ in range(attempts):
        await asyncio.sleep(interval)
        current = read_rss()
        if abs(current - previous) <= previous * 0.005:
            return current
        previous = current
    return previous


async def _open_all(client: Client, gate: asyncio.Semaphore, count: int) -> list[Connection]:
    """count connections, each answered once; ConnectionError (all closed) if any failed."""
    opened = await asyncio.gather(*(client.open(gate) for _ in range(count)),
                                  return_exceptions=True)
    connections = [c for c in opened if isinstance(c, Connection)]
    if len(connections) < count:
        for connection in connections:
            connection.writer.close()
        failure = next(c for c in opened if not isinstance(c, Connection))
        raise ConnectionError(f"{count - len(connections)} of {count} connections failed: "
                              f"{failure}")
    return connections


async def measure_idle(host: str, port: int, request: Request, count: int,
                       read_rss: Callable[[], int], parallel: int = 100,
                       protocol: str = "h1") -> IdleSample:
    """Memory per idle keep-alive connection: (RSS with count held - RSS before) / count."""
    client = Client(host, port, request, protocol)
    gate = asyncio.Semaphore(parallel)
    # Warm up: a burst of short-lived connections so one-time allocations are not counted.
    for connection in await _open_all(client, gate, parallel):
        connection.writer.close()
    rss_before = await _settled_rss(read_rss)
    connections = await _open_all(client, gate, count)
    try:
        rss_after = await _settled_rss(read_rss)
        alive = await asyncio.gather(*(client.still_open(c, gate) for c in connections))
    finally:
        for connection in connections:
            connection.writer.close()
    return IdleSample(count, rss_before, rss_after, sum(alive))
