"""Slow clients on HTTP/3: a trickled body gets 408, a stream whose client gives no credit is
reset (H3_REQUEST_CANCELLED), and the other streams of the connection are served meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from aioquic.h3.connection import ErrorCode

from tests.helpers import run_server
from tests.integration.slow_clients_support import WINDOW, pace_app, pace_limits
from tests.integration.test_http3_helpers import H3Client, h3_connect, h3_server_kwargs

release = threading.Event()
app = pace_app(64, [], release)


def server_kwargs(tls_files: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    return h3_server_kwargs(tls_files, **pace_limits(**kwargs))


def withhold_credit(client: H3Client, stream_id: int) -> None:
    """The client never raises this stream's MAX_STREAM_DATA: a reader that stopped reading."""
    quic = client._quic
    original = quic._write_stream_limits

    def write_stream_limits(builder: Any, space: Any, stream: Any) -> None:
        if stream.stream_id != stream_id:
            original(builder=builder, space=space, stream=stream)

    quic._write_stream_limits = write_stream_limits  # type: ignore[method-assign]


def test_h3_slow_body_gets_408_while_other_streams_are_served(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            started = time.monotonic()
            slow = client.start_request(
                "POST", "/echo", headers=[(b"content-length", b"4096")], body=b"", end=False
            )
            response = client.responses[slow]
            served = 0
            while not response.done.is_set() and time.monotonic() - started < WINDOW + 3:
                client.send_body(slow, b"x", end=False)  # 5 bytes/s
                other = await client.request("GET", "/")
                served += other.status == 200
                await asyncio.sleep(0.2)
            assert response.status == 408, response
            assert WINDOW <= time.monotonic() - started < WINDOW + 3
            assert served >= 2
            assert (await client.request("POST", "/echo", body=b"q" * 5000)).body == b"5000"

    with run_server(app, **server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


@pytest.mark.parametrize("path", ["/big", "/whole"])
def test_h3_stream_without_credit_is_reset_while_others_proceed(tls_files: dict[str, str], path: str) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"], max_stream_data=65536) as client:
            stuck = client._quic.get_next_available_stream_id()
            withhold_credit(client, stuck)
            started = time.monotonic()
            assert client.start_request("GET", path) == stuck
            response = client.responses[stuck]
            served = 0
            while not response.done.is_set() and time.monotonic() - started < WINDOW + 3:
                other = await client.request("GET", "/")  # the connection serves on meanwhile
                served += other.status == 200
                await asyncio.sleep(0.1)
            await asyncio.wait_for(response.done.wait(), 1)
            assert response.reset_code == ErrorCode.H3_REQUEST_CANCELLED
            assert WINDOW <= time.monotonic() - started < WINDOW + 3
            assert len(response.body) < 64 * 65536
            assert served >= 2

    with run_server(app, **server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_h3_slow_apps_with_fast_clients_are_not_tripped(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            drip, late = await asyncio.gather(
                client.request("GET", "/drip"),
                client.request("POST", "/late", body=b"l" * (2 * 1024 * 1024)),
            )
            assert drip.reset_code is None and bytes(drip.body) == b"0,1,2,3,4,5,6,7,8,9,end"
            assert late.status == 200 and late.body == b"%d" % (2 * 1024 * 1024)
            big = await client.request("GET", "/big")  # a reader that keeps up
            assert big.reset_code is None and len(big.body) == 64 * 65536

    with run_server(app, **server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_h3_body_held_back_by_another_streams_unread_body_is_not_slow(tls_files: dict[str, str]) -> None:
    """Stream A's app reads nothing and its body uses the connection's credit: stream B's
    client cannot send, so B's app waiting for body must not count against the client."""
    release.clear()

    window = 64 * 1024

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            # A's body leaves a few hundred bytes of connection credit: B's head and the start
            # of its body get through, the rest of B's body waits for credit.
            held = client.start_request("POST", "/hold", body=b"u" * (window - 300))
            await asyncio.sleep(0.3)
            waiting = client.start_request(
                "POST", "/echo", headers=[(b"content-length", b"1000")], body=b"v" * 1000
            )
            await asyncio.sleep(0.3)
            assert 0 < client._quic._streams[waiting].sender.highest_offset < 1000
            await asyncio.sleep(WINDOW * 3)
            assert client.responses[waiting].status == 0  # no 408: the server held the credit
            release.set()
            for stream_id, size in ((held, window - 300), (waiting, 1000)):
                response = client.responses[stream_id]
                await asyncio.wait_for(response.done.wait(), 10)
                assert response.status == 200 and response.body == b"%d" % size

    kwargs = server_kwargs(tls_files, h3_max_stream_data=window, h3_max_data=window)
    with run_server(app, **kwargs) as server:
        try:
            asyncio.run(main(server.port))
        finally:
            release.set()
