"""Slow clients on HTTP/3: a trickled body gets 408, a stream whose client gives no credit is
reset (H3_REQUEST_CANCELLED), and the other streams of the connection are served meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from aioquic.h3.connection import ErrorCode

from tests.helpers import read_body, run_server
from tests.integration.test_http3_helpers import H3Client, h3_connect, h3_server_kwargs

WINDOW = 0.6
RATE = 200


def server_kwargs(tls_files: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("timeout_request_body", WINDOW)
    kwargs.setdefault("min_request_body_rate", RATE)
    kwargs.setdefault("timeout_send", WINDOW)
    kwargs.setdefault("min_send_rate", RATE)
    return h3_server_kwargs(tls_files, **kwargs)


async def app(scope: Any, receive: Any, send: Any) -> None:
    """/echo answers the body's length, /big sends 4 MB in 64 KiB messages, /whole in one."""
    path = scope["path"]
    if path == "/echo":
        answer = b"%d" % len(await read_body(receive))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer})
    elif path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(64):
                await send({"type": "http.response.body", "body": b"b" * 65536, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass
    elif path == "/whole":  # the app is done at once: the bytes wait in the QUIC stream
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"w" * (64 * 65536)})
    elif path == "/drip":  # a slow app: a few bytes every 0.25 s for about four windows
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(10):
            await send({"type": "http.response.body", "body": b"%d," % index, "more_body": True})
            await asyncio.sleep(0.25)
        await send({"type": "http.response.body", "body": b"end"})
    elif path == "/late":  # a slow app: reads its body only after two windows
        await asyncio.sleep(WINDOW * 2.5)
        answer = b"%d" % len(await read_body(receive))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


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
    release = threading.Event()

    async def hold_then_echo(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/hold":
            while not release.is_set():
                await asyncio.sleep(0.01)
        await app({**scope, "path": "/echo"}, receive, send)

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
    with run_server(hold_then_echo, **kwargs) as server:
        try:
            asyncio.run(main(server.port))
        finally:
            release.set()
