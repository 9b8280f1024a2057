"""How HTTP/1.1 responses leave: the writes (TLS records) a response takes, and their timing."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import Any

import httpx
import pytest

from roadrunner.protocols.http1 import rules
from tests.helpers import raw_request, read_body, recv_until, run_server

CHUNKS = 50


async def streaming_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/stream: CHUNKS small body chunks sent back to back, then the end; else a short body."""
    if scope["path"] != "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    headers = []
    if scope["query_string"] == b"length":
        headers.append((b"content-length", str(CHUNKS * 10).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for _ in range(CHUNKS):
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class RecordCountingClient:
    """A TLS client over memory BIOs that counts the TLS records the server sends."""

    def __init__(self, port: int, cafile: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        context = ssl.create_default_context(cafile=cafile)
        context.set_alpn_protocols(["http/1.1"])
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.raw = b""  # received bytes not yet split into whole records
        self.records = 0  # application-data records (RFC 8446 §5.1: content type 23)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.receive()
        self.flush()

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def receive(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        self.incoming.write(data)
        self.raw += data
        while len(self.raw) >= 5:  # RFC 8446 §5.1: type (1), version (2), length (2)
            end = 5 + int.from_bytes(self.raw[3:5], "big")
            if len(self.raw) < end:
                break
            self.records += self.raw[0] == 23
            self.raw = self.raw[end:]

    def exchange(self, request: bytes, body_length: int) -> tuple[bytes, bytes, int]:
        """Send one request; read its head and `body_length` bytes of body. The head, the body
        and how many records they came in."""
        before = self.records
        self.tls.write(request)
        self.flush()
        response = b""
        while b"\r\n\r\n" not in response or len(response.partition(b"\r\n\r\n")[2]) < body_length:
            try:
                response += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.receive()
        head, _, body = response.partition(b"\r\n\r\n")
        return head, body, self.records - before


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_small_chunks_sent_back_to_back_leave_in_few_tls_records(
    tls_files: dict[str, str], loop: str, framing: str
) -> None:
    """Body chunks the app sends without a pause leave together, once per loop pass, not one
    TLS record (and one send) each: 50 chunks of 10 bytes are not 50 records of 32 bytes."""
    with run_server(streaming_app, loop=loop, ssl_certfile=tls_files["certfile"],
                    ssl_keyfile=tls_files["keyfile"]) as server:
        client = RecordCountingClient(server.port, tls_files["cafile"])
        try:
            # A first exchange takes the session tickets (TLS 1.3) off the connection.
            head, body, _ = client.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"ok"
            query = b"?length" if framing == "length" else b""
            expected = b"x" * 10 * CHUNKS if framing == "length" else (
                b"a\r\nxxxxxxxxxx\r\n" * CHUNKS + b"0\r\n\r\n")
            head, body, records = client.exchange(
                b"GET /stream%s HTTP/1.1\r\nHost: x\r\n\r\n" % query, len(expected))
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert body == expected
            # One write on the next pass, or a few if a fairness slice (1 ms) ran out.
            assert records <= 10, records
        finally:
            client.sock.close()


def test_a_short_streamed_response_leaves_in_one_tls_record(tls_files: dict[str, str]) -> None:
    """A few small chunks and the end, sent without a pause, leave with the head in one write:
    the send fairness slice (stream.SEND_SLICE) starts with the first chunk, so the first chunk
    does not yield at once (it did, and every streamed response took two writes). Tried a few
    times: a slice may run out on a loaded machine, but not on every try."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        await send({"type": "http.response.body", "body": b"x" * 10})

    expected = b"a\r\nxxxxxxxxxx\r\n" * 4 + b"0\r\n\r\n"
    with run_server(app, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"]) as server:
        client = RecordCountingClient(server.port, tls_files["cafile"])
        try:
            client.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", len(expected))  # session tickets
            counts = []
            for _ in range(5):
                head, body, records = client.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", len(expected))
                assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == expected
                counts.append(records)
            assert min(counts) == 1, counts
        finally:
            client.sock.close()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_body_chunk_leaves_while_the_app_waits_after_it(http: str) -> None:
    """A held chunk waits for the loop pass only, not for the app's next message."""
    release = threading.Event()

    async def chunk_then_wait(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"8")]})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await send({"type": "http.response.body", "body": b"sec", "more_body": True})
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})

    with run_server(chunk_then_wait, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                data = recv_until(sock, lambda data: data.endswith(b"firstsec"), "the body")
                assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            finally:
                release.set()


def test_chunks_of_more_sizes_than_the_size_line_cache_holds_are_framed_right() -> None:
    """rules.chunk_size_line keeps CHUNK_SIZE_LINES_LIMIT lines; more sizes than that (it is
    cleared and refilled) still frame every chunk with its own size (RFC 9112 §7.1)."""
    sizes = range(1, rules.CHUNK_SIZE_LINES_LIMIT + 200)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for size in sizes:
            await send({"type": "http.response.body", "body": bytes([size % 251]) * size, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    expected = b"".join(bytes([size % 251]) * size for size in sizes)
    with run_server(app) as running, httpx.Client(base_url=running.url) as client:
        for _ in range(2):  # the second response finds the cache refilled by the first
            response = client.get("/")
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.content == expected


@pytest.mark.parametrize("pieces", [[b"abc"], [b"a", b"b", b"c"], [b"ab", b"", b"c"]])
def test_a_body_shorter_than_its_content_length_is_sent_then_the_connection_closes(
    pieces: list[bytes],
) -> None:
    """As uvicorn: send() raises "Response content shorter than Content-Length" to the app, what
    it sent still leaves, and the connection closes (the client cannot mistake it for whole)."""
    raised: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        for piece in pieces[:-1]:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        try:
            await send({"type": "http.response.body", "body": pieces[-1]})
        except RuntimeError as exc:
            raised.append(str(exc))
            raise

    with run_server(app) as running:
        response = raw_request(running.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 10" in head.lower()
    assert body == b"abc"  # and then the close: the pipelined second request is not answered
    assert raised == ["Response content shorter than Content-Length"]


def test_a_body_longer_than_its_content_length_is_refused() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"c"})

    with run_server(app) as running:
        response = raw_request(running.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b"ab"


PIPELINED = 16


def read_responses(client: RecordCountingClient, count: int) -> bytes:
    """Read until `count` responses of streaming_app's short body ("ok") have come."""
    data = b""
    while data.count(b"\r\n\r\nok") < count:
        try:
            data += client.tls.read(65536)
        except ssl.SSLWantReadError:
            client.receive()
    return data


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_pipelined_responses_answered_back_to_back_leave_together(
    tls_files: dict[str, str], loop: str, http: str
) -> None:
    """16 pipelined requests the app answers at once: their responses leave in one write (one
    TLS record, one send) or a few, not one each; in order, each whole."""
    with run_server(streaming_app, loop=loop, http=http, ssl_certfile=tls_files["certfile"],
                    ssl_keyfile=tls_files["keyfile"]) as server:
        client = RecordCountingClient(server.port, tls_files["cafile"])
        try:
            client.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2)  # takes the session tickets
            before = client.records
            client.tls.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * PIPELINED)
            client.flush()
            data = read_responses(client, PIPELINED)
            responses = data.split(b"HTTP/1.1 ")[1:]
            assert len(responses) == PIPELINED
            assert all(r.startswith(b"200 OK\r\n") and r.endswith(b"\r\n\r\nok") for r in responses)
            assert client.records - before <= 3, client.records - before
        finally:
            client.sock.close()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_pipelined_response_leaves_while_the_next_one_waits(http: str) -> None:
    """Held for the next pipelined response only while that one is answered at once: behind an
    app that waits, the earlier response is not held back."""
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while scope["path"] == "/wait" and not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": scope["path"][1:3].encode()})

    with run_server(app, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            try:
                sock.sendall(b"GET /aa HTTP/1.1\r\nHost: x\r\n\r\nGET /wait HTTP/1.1\r\nHost: x\r\n\r\n"
                             b"GET /bb HTTP/1.1\r\nHost: x\r\n\r\n")
                # Times out (fails) if held behind /wait.
                data = recv_until(sock, lambda data: data.endswith(b"\r\n\r\naa"), "the first response")
                release.set()
                data = recv_until(sock, lambda data: data.endswith(b"\r\n\r\nbb"), "the last response", data)
                assert [r[-2:] for r in data.split(b"HTTP/1.1 200 OK")[1:]] == [b"aa", b"wa", b"bb"]
            finally:
                release.set()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_100_continue_leaves_after_the_pipelined_response_before_it(http: str) -> None:
    """RFC 9112 §9.3.2: responses in request order; an interim 100 Continue for a pipelined
    request comes after the earlier response, however that one was held."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body) + 2).encode())]})
        await send({"type": "http.response.body", "body": b"ok" + body})

    with run_server(app, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
            data = recv_until(sock, lambda data: b"100 Continue\r\n\r\n" in data, "the 100 Continue")
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            first, _, interim = data.partition(b"HTTP/1.1 100 Continue")
            assert first.endswith(b"\r\n\r\nok") and interim == b"\r\n\r\n"
            sock.sendall(b"abc")
            data = recv_until(sock, lambda data: data.endswith(b"okabc"), "the second response")
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_pipelined_responses_past_the_carry_limit_each_arrive_whole(http: str) -> None:
    """rules.CARRY_LIMIT bounds what pipelined responses hold for each other: responses larger
    than it together (and one larger by itself) still arrive whole and in order."""
    sizes = [rules.CARRY_LIMIT // 3, rules.CARRY_LIMIT // 3, rules.CARRY_LIMIT // 2, 10,
             rules.CARRY_LIMIT + 1, 10, rules.CARRY_LIMIT - 200, 7]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        index = int(scope["path"][1:])
        body = bytes([65 + index]) * sizes[index]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    with run_server(app, http=http) as server:
        requests = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(len(sizes) - 1))
        last = b"GET /%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (len(sizes) - 1)
        response = raw_request(server.port, requests + last)
    bodies = []
    while response:
        head, _, rest = response.partition(b"\r\n\r\n")
        length = int(head.lower().partition(b"content-length: ")[2].split(b"\r\n")[0])
        bodies.append(rest[:length])
        response = rest[length:]
    assert bodies == [bytes([65 + i]) * size for i, size in enumerate(sizes)]
