"""One HTTP/1.1 behaviour on both parsers: `--http h11` is at least as strict as httptools.

A table of raw requests runs on both parsers over a real socket; a seeded differential mutator
then feeds a few thousand mutated requests (each followed by a blank line) to both connection classes (on a recording
transport, so it stays fast) and asserts the same scopes or the same error status.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from roadrunner.config import Config
from roadrunner.protocols.http1 import H11Connection, HttpToolsConnection
from roadrunner.server import ServerState
from tests.helpers import RunningServer, read_body, run_server, status_of

PARSERS = ["httptools", "h11"]
CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

# name: (raw request, expected status of the first response, whether the server closes, and
# for a served request what the echo app saw: "name=value;..." of its headers, "|", its body)
PARITY_CASES: dict[str, tuple[bytes, int, bool, bytes | None]] = {
    # RFC 9110 §5.5: a control character other than HTAB in a field value is invalid.
    **{
        f"ctl_{code:02x}_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a%cb\r\n\r\n" % code, 400, True, None)
        for code in (0x01, 0x08, 0x0B, 0x0C, 0x1B, 0x1F, 0x7F)
    },
    "htab_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\tb\r\n\r\n", 200, False, b"host=x;x=a\tb|"),
    "obs_text_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: \x80\xff\r\n\r\n", 200, False, b"host=x;x=\x80\xff|"),
    # RFC 9110 §15.6.6: a major version we do not implement is a 505, judged before Host is.
    "version_9_9": (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505, True, None),
    "version_2_0": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, True, None),
    "version_9_1_no_host": (b"GET / HTTP/9.1\r\n\r\n", 505, True, None),
    "version_9_1_te_gzip": (b"POST / HTTP/9.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 505, True, None),
    # llhttp reads a request line without a version as HTTP/0.9: not a version, a 400.
    "version_0_9": (b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 400, True, None),
    "no_version": (b"GET /\r\nHost: x\r\n\r\n", 400, True, None),
    # RFC 9112 §2.3: a higher minor version of 1.x is served as 1.1 (keep-alive included).
    "version_1_7": (b"GET / HTTP/1.7\r\nHost: x\r\n\r\n", 200, False, b"host=x|"),
    "version_two_digits": (b"GET / HTTP/1.12\r\nHost: x\r\n\r\n", 400, True, None),
    "h2_preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, True, None),
    # A bad target is a 400 before the version is judged (llhttp's order).
    "bad_target_odd_version": (b"GET chunked HTTP/0.1\r\nHost: x\r\n\r\n", 400, True, None),
    "quote_in_authority": (b'GET http://a"b/ HTTP/1.1\r\nHost: x\r\n\r\n', 400, True, None),
    "hash_in_authority": (b"GET http://a#b/p HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "digit_in_scheme": (b"GET htt9p://a/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "unknown_method": (b"POaT / HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    # RFC 9112 §3: runs of SP between the request-line parts are taken (llhttp does).
    "double_sp_in_request_line": (b"GET  /  HTTP/1.1\r\nHost: x\r\n\r\n", 200, False, b"host=x|"),
    # RFC 9112 §2.2: empty lines before a request line are ignored.
    "leading_empty_lines": (b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, False, b"host=x|"),
    # RFC 9110 §5.5: OWS around a field value is not part of it.
    "trailing_ows_in_value": (b"GET / HTTP/1.1\r\nHost: x \t\r\nX: a \r\n\r\n", 200, False, b"host=x;x=a|"),
    # RFC 9112 §2.2 / §7.1: line ends are CRLF; bare LF is refused (as llhttp does).
    "bare_lf_chunked": (CHUNKED_HEAD + b"3\nabc\n0\n\n", 400, True, None),
    "bare_lf_last_chunk": (CHUNKED_HEAD + b"3\r\nabc\r\n0\n\n", 400, True, None),
    "bare_lf_after_last_chunk": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n\n", 400, True, None),
    "bare_lf_in_trailer": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX: y\n\r\n", 400, True, None),
    "bare_lf_head": (b"GET / HTTP/1.1\nHost: x\n\n", 400, True, None),
    "bare_cr_in_request_line": (b"GET /\r HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    # RFC 9112 §7.1.1 chunk lines as llhttp reads them.
    "space_after_chunk_size": (CHUNKED_HEAD + b"3 \r\nabc\r\n0\r\n\r\n", 400, True, None),
    "chunk_ext_not_a_token": (CHUNKED_HEAD + b"3;a b\r\nabc\r\n0\r\n\r\n", 400, True, None),
    "chunk_ext_lone_semicolon": (CHUNKED_HEAD + b"3;\r\nabc\r\n0\r\n\r\n", 400, True, None),
    "chunk_ext_ok": (CHUNKED_HEAD + b'3;a=b;c="d e";f=;;g\r\nabc\r\n0\r\n\r\n', 200, False, b"host=x;transfer-encoding=chunked|abc"),
    # Trailer fields (RFC 9110 §6.5) are not part of the scope; framing fields are refused.
    "trailer_not_in_scope": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-T: v\r\n\r\n", 200, False, b"host=x;transfer-encoding=chunked|abc"),
    "ctl_in_trailer": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-T: v\x7f\r\n\r\n", 400, True, None),
    "obs_fold_in_trailer": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-T:\r\n v\r\n\r\n", 400, True, None),
    "content_length_in_trailer": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n", 400, True, None),
    # RFC 9112 §6.1 / §6.3: framing that cannot be trusted is a 400 (before any 501).
    "ctl_in_transfer_encoding": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chun\x1fked\r\n\r\n", 400, True, None),
    "empty_transfer_encoding": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", 400, True, None),
    "content_length_and_te_gzip": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400, True, None
    ),
    "chunked_not_last": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, True, None),
    "chunked_then_other_field": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 400, True, None
    ),
    "chunked_then_htab": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\t\r\n\r\n", 400, True, None),
    # RFC 9112 §9.6: nothing is read after a request that closes the connection.
    "bytes_after_close": (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n\x00garbage\r\n\r\n", 200, True, b"host=x;connection=close|"
    ),
    # RFC 9112 §9.3.2: a refused pipelined request is answered after the one before it.
    "refused_after_served": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\nG\x00T / HTTP/1.1\r\n\r\n", 200, True, b"host=x|"),
}


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo the headers the app saw and the request body."""
    body = b";".join(name + b"=" + value for name, value in scope["headers"]) + b"|" + await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module", params=PARSERS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_server(hello, http=request.param) as running:
        yield running


def exchange(port: int, data: bytes, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Send `data`; what came back and whether the server closed (not the client's timeout).

    Once a whole response is in, the server has 0.3 s to close; an open connection is kept.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head.lower())
            if length and len(body) >= int(length[1]):
                sock.settimeout(0.3)


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_both_parsers_answer_alike(server: RunningServer, case: str) -> None:
    request, status, closes, echo = PARITY_CASES[case]
    data, closed = exchange(server.port, request)
    assert data, f"{case}: no answer (the connection {'closed' if closed else 'hung'})"
    assert status_of(data) == status, data
    assert closed == closes, data
    if closes:
        assert b"connection: close" in data.lower()
    if echo is not None:
        assert data.partition(b"\r\n\r\n")[2].startswith(echo), data
    if case == "refused_after_served":
        assert re.findall(rb"HTTP/1\.1 (\d+)", data) == [b"200", b"400"], data


# -- differential mutator ---------------------------------------------------------------------------

SEEDS = [
    b"GET /a/b%20c?x=1&y=%32 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-A: b , c\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    CHUNKED_HEAD + b"5;ext=1\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
    b"GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: y\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nokGET /n HTTP/1.1\r\nHost: x\r\n\r\n",
]
ALPHABET = [
    b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"\x00", b"\x7f", b"\x01", b"\x1f", b"\x80", b"0", b"1",
    b"9", b"a", b"F", b";", b"=", b'"', b",", b"/", b"?", b"#", b"%", b"chunked", b"HTTP/1.1",
    b"Content-Length: ", b"Transfer-Encoding: ", b"Host: h\r\n",
]
FUZZ_CASES = 4000


class RecordingTransport(asyncio.Transport):
    """An asyncio transport that keeps what was written and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1234), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: Any) -> None:
        self.out += data

    def writelines(self, data: Any) -> None:
        for part in data:
            self.out += part

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(data) + 1)
        op = rng.randrange(3)
        piece = rng.choice(ALPHABET)
        if op == 0:
            data = data[:pos] + piece + data[pos:]
        elif op == 1:
            data = data[:pos] + data[pos + rng.randint(1, 4):]
        else:
            data = data[:pos] + piece + data[pos + len(piece):]
    return data


async def outcome(connection_class: Any, config: Config, data: bytes, cuts: list[int]) -> tuple[Any, ...]:
    """What one connection made of `data`: the requests its app saw and the statuses sent."""
    seen: list[tuple[Any, ...]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:  # a request refused in its body is not one the app was given
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append((
            scope["method"], scope["path"], scope["raw_path"], scope["query_string"],
            scope["headers"], scope["http_version"], body,
        ))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    connection = connection_class(config, ServerState(), {})
    connection.app = app
    transport = RecordingTransport()
    connection.connection_made(transport)
    # The client's head ends: a parser that would wait for more has to judge what it has.
    data += b"\r\n\r\n"
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        connection.data_received(data[start:end])
        await asyncio.sleep(0)
    for _ in range(20):
        await asyncio.sleep(0)
    statuses = re.findall(rb"^HTTP/1\.1 (\d{3}) ", bytes(transport.out), re.M)
    closed = transport.closed
    connection.connection_lost(None)
    for _ in range(5):
        await asyncio.sleep(0)
    return seen, statuses, closed


def test_differential_mutations_agree() -> None:
    """Seeded mutations of valid requests: both parsers serve them alike or refuse them alike."""
    configs = {
        cls: Config(hello, http=name, lifespan="off", log_config=None, access_log=False)
        for cls, name in ((HttpToolsConnection, "httptools"), (H11Connection, "h11"))
    }
    rng = random.Random(15)
    error_log = logging.getLogger("roadrunner.error")
    disagreements: list[str] = []

    async def main() -> None:
        started = time.monotonic()
        for _ in range(FUZZ_CASES):
            data = mutate(rng, rng.choice(SEEDS))
            # Segment boundaries too: the same cuts for both parsers.
            cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(0, 2), len(data) - 1)))
            fast = await outcome(HttpToolsConnection, configs[HttpToolsConnection], data, cuts)
            strict = await outcome(H11Connection, configs[H11Connection], data, cuts)
            if fast != strict:
                disagreements.append(f"{data!r}\n  httptools: {fast}\n  h11:       {strict}")
        assert time.monotonic() - started < 60

    level = error_log.level
    error_log.setLevel(logging.CRITICAL)
    try:
        asyncio.run(main())
    finally:
        error_log.setLevel(level)
    assert not disagreements, f"{len(disagreements)} disagreements:\n" + "\n".join(disagreements[:15])
