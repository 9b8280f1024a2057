"""How reads reach a connection (protocols/tcp.py, reads_by_data_received).

asyncio's and uvloop's TLS layers read a record with SSLObject.read(262144), and asyncio's
plaintext transport with sock.recv(262144): a 256 KiB bytes object per read, which glibc
serves with mmap / mremap / munmap. Connections are buffered protocols there, reading into the
server's one buffer; uvloop's plaintext transport, which has a buffer of its own, hands them
bytes by data_received. Each case is judged by what it is for: no read allocates 256 KiB
(tracemalloc's peak, server and clients in this process, the clients reading at most 64 KiB).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from websockets.sync.client import connect

from tests.helpers import read_body, recv_until, run_server, websocket_echo

REQUESTS = 20
# A 256 KiB read buffer would put the peak at least this far above the start.
PEAK_LIMIT = 160 * 1024


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await websocket_echo(scope, receive, send)
        return
    body = await read_body(receive)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % (len(body) + 2))]})
    await send({"type": "http.response.body", "body": b"ok" + body})


def client_context(tls_files: dict[str, str], alpn: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls_files["cafile"])
    context.set_alpn_protocols([alpn])
    return context


def h1_exchanges(port: int, context: ssl.SSLContext | None) -> Iterator[bytes]:
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=5)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        for n in range(REQUESTS):
            body = b"b" * n * 100
            sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            expected = b"ok" + body
            yield recv_until(sock, lambda data, e=expected: data.endswith(e), "the response")  # type: ignore[misc]


def h2_exchanges(port: int, context: ssl.SSLContext) -> Iterator[bytes]:
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="127.0.0.1") as sock:
        assert sock.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        for _ in range(REQUESTS):
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"),
                                          (":path", "/"), (":authority", "127.0.0.1")], end_stream=True)
            sock.sendall(conn.data_to_send())
            body, ended = b"", False
            while not ended:
                for event in conn.receive_data(sock.recv(65536)):
                    if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                        body += event.data
                    ended = ended or (isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id)
                sock.sendall(conn.data_to_send())
            yield body


def ws_exchanges(port: int, context: ssl.SSLContext | None) -> Iterator[bytes]:
    scheme = "wss" if context is not None else "ws"
    with connect(f"{scheme}://127.0.0.1:{port}/", ssl=context) as ws:
        for n in range(REQUESTS):
            ws.send("m" * (n + 1))
            yield str(ws.recv(timeout=5)).encode()


def connection_kinds(server: Any) -> set[tuple[bool, bool]]:
    """(buffered, asyncio.Protocol) of each open connection."""
    return {(isinstance(c, asyncio.BufferedProtocol), isinstance(c, asyncio.Protocol))
            for c in server.server.server_state.connections}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plaintext"])
@pytest.mark.parametrize("kind", ["h1", "h2", "ws"])
def test_no_read_allocates_a_256k_buffer(tls_files: dict[str, str], loop: str, tls: bool, kind: str) -> None:
    if kind == "h2" and not tls:
        pytest.skip("h2c is the same class as h2 over TLS: the plaintext h1 case covers the choice")
    tls_kwargs = {"ssl_certfile": tls_files["certfile"], "ssl_keyfile": tls_files["keyfile"]} if tls else {}
    with run_server(app, loop=loop, **tls_kwargs) as server:
        context = client_context(tls_files, "h2" if kind == "h2" else "http/1.1") if tls else None
        exchanges = {"h1": lambda: h1_exchanges(server.port, context),
                     "h2": lambda: h2_exchanges(server.port, context),  # type: ignore[arg-type]
                     "ws": lambda: ws_exchanges(server.port, context)}[kind]
        replies = exchanges()
        first = next(replies)  # handshakes and first-use allocations out of the way
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            rest = [next(replies) for _ in range(REQUESTS - 1)]
            peak = tracemalloc.get_traced_memory()[1] - start
        finally:
            tracemalloc.stop()
        kinds = connection_kinds(server)  # the client's connection still open
        replies.close()
    last = {"h1": b"ok" + b"b" * (REQUESTS - 1) * 100, "h2": b"ok", "ws": b"m" * REQUESTS}[kind]
    assert first and len(rest) == REQUESTS - 1 and rest[-1].endswith(last)
    # uvloop's plaintext transport alone hands over bytes (an asyncio.Protocol to it).
    by_data_received = loop == "uvloop" and not tls
    assert kinds == {(True, by_data_received)}, kinds
    if tls and loop == "asyncio" and sys.version_info < (3, 11):
        return  # 3.10's asyncio TLS layer (sslproto._SSLPipe) reads 256 KiB itself, whatever the protocol
    assert peak < PEAK_LIMIT, f"a read allocated {peak:,} bytes at once"
