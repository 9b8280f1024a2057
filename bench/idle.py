"""The idle-connection client: N keep-alive connections, one request each, then held open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bench.http1 import encode_request, parse_response
from bench.results import IdleSample
from bench.scenarios import Request

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    payload: bytes) -> bool:
    """Send one request; True once a complete 200 response has been read."""
    writer.write(payload)
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return False
        buffer += chunk
        response = parse_response(buffer)
        if response is not None:
            return response.status == 200


async def _open(host: str, port: int, payload: bytes, gate: asyncio.Semaphore) -> Connection:
    async with gate:
        reader, writer = await asyncio.open_connection(host, port)
        if not await _exchange(reader, writer, payload):
            writer.close()
            raise ConnectionError("idle-connection request failed")
        return reader, writer


async def _still_open(connection: Connection, payload: bytes, gate: asyncio.Semaphore) -> bool:
    async with gate:
        try:
            return await asyncio.wait_for(_exchange(*connection, payload), 10)
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


async def measure_idle(host: str, port: int, request: Request, count: int,
                       read_rss: Callable[[], int], parallel: int = 100) -> IdleSample:
    """Memory per idle keep-alive connection: (RSS with count held - RSS before) / count."""
    payload = encode_request(request, f"{host}:{port}")
    gate = asyncio.Semaphore(parallel)
    # Warm up: a burst of short-lived connections so one-time allocations are not counted.
    warm = await asyncio.gather(*(_open(host, port, payload, gate) for _ in range(parallel)))
    for _, writer in warm:
        writer.close()
    rss_before = await _settled_rss(read_rss)
    connections = await asyncio.gather(*(_open(host, port, payload, gate) for _ in range(count)))
    try:
        rss_after = await _settled_rss(read_rss)
        alive = await asyncio.gather(*(_still_open(c, payload, gate) for c in connections))
    finally:
        for _, writer in connections:
            writer.close()
    return IdleSample(count, rss_before, rss_after, sum(alive))
