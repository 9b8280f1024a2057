"""One HTTP/1.1 behaviour on both parsers: `--http h11` is at least as strict as httptools.

A table of raw requests runs on both parsers over a real socket; a seeded differential mutator
then feeds a few thousand mutated requests to both connection classes through tests/h1_driver.py
(the driver and normalisation the atheris harness tests/fuzz/fuzz_http1.py uses too) and asserts
the same scopes or the same error status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import h1_driver
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
    # llhttp takes "*" followed by more as a target: still a bad target, judged before the version.
    "asterisk_then_more_odd_version": (b"OPTIONS *= HTTP/0.1\r\nHost: x\r\n\r\n", 400, True, None),
    "quote_in_authority": (b'GET http://a"b/ HTTP/1.1\r\nHost: x\r\n\r\n', 400, True, None),
    "hash_in_authority": (b"GET http://a#b/p HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "digit_in_scheme": (b"GET htt9p://a/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    "unknown_method": (b"POaT / HTTP/1.1\r\nHost: x\r\n\r\n", 400, True, None),
    # RFC 9112 §3.2: more than one Host is a 400 in any request, HTTP/1.0 too (before its 501
    # for chunked; an unsupported coding is judged first, as h11 does).
    "two_hosts_http_1_0": (b"GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400, True, None),
    "two_hosts_http_1_0_chunked": (
        b"POST / HTTP/1.0\r\nHost: x\r\nHost: y\r\nTransfer-Encoding: chunked\r\n\r\n", 400, True, None
    ),
    # RFC 9112 §3: runs of SP between the request-line parts are taken (llhttp does).
    "double_sp_in_request_line": (b"GET  /  HTTP/1.1\r\nHost: x\r\n\r\n", 200, False, b"host=x|"),
    # RFC 9112 §2.2: empty lines before a request line are ignored.
    "leading_empty_lines": (b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, False, b"host=x|"),
    # RFC 9110 §5.5: OWS around a field value is not part of it.
    "value_only_ows": (b"GET / HTTP/1.1\r\nHost: x\r\nX: \t \r\nY:\t\r\n\r\n", 200, False, b"host=x;x=;y=|"),
    "trailing_tab_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\t\r\n\r\n", 200, False, b"host=x;x=a|"),
    # Names lower-cased (ASGI), the same name in two spellings kept as two fields, in order.
    "mixed_case_names": (
        b"GET / HTTP/1.1\r\nHOST: x\r\nX-Mixed-Case: v\r\nx-MIXED-case: w\r\n\r\n", 200, False,
        b"host=x;x-mixed-case=v;x-mixed-case=w|",
    ),
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
    # A field value reaches the app as sent: h11 lowercases Transfer-Encoding's, llhttp does not.
    "te_value_case_kept": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chuNked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        200, False, b"host=x;transfer-encoding=chuNked|abc",
    ),
    # Trailer fields (RFC 9110 §6.5) are not part of the scope; framing fields are refused.
    "trailer_not_in_scope": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-T: v\r\n\r\n", 200, False, b"host=x;transfer-encoding=chunked|abc"),
    "ctl_in_trailer": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-T: v\x7f\r\n\r\n", 400, True, None),
    "obs_fold_in_trailer": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-T:\r\n v\r\n\r\n", 400, True, None),
    "content_length_in_trailer": (CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n", 400, True, None),
    # RFC 9112 §7.1.2 / RFC 9110 §6.5: the trailer section has its own budget, as the head has:
    # --limit-request-headers-size bytes (16384) and --limit-request-fields fields (100), then 431.
    "trailer_and_head_each_under_limit": (
        CHUNKED_HEAD[:-2] + b"X-H: %s\r\n\r\n3\r\nabc\r\n0\r\nX-T: %s\r\n\r\n" % (b"h" * 10240, b"t" * 10240),
        200, False, b"host=x;transfer-encoding=chunked;x-h=" + b"h" * 10240 + b"|abc",
    ),
    "trailer_over_size_limit": (
        CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-T: %s\r\n\r\n" % (b"t" * 16384), 431, True, None
    ),
    "trailer_fields_under_limit": (
        CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(100)) + b"\r\n",
        200, False, b"host=x;transfer-encoding=chunked|abc",
    ),
    "trailer_over_field_limit": (
        CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
        431, True, None,
    ),
    # RFC 9112 §6.1 / §6.3: framing that cannot be trusted is a 400 (before any 501).
    "ctl_in_transfer_encoding": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chun\x1fked\r\n\r\n", 400, True, None),
    "empty_transfer_encoding": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", 400, True, None),
    "content_length_and_te_gzip": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400, True, None
    ),
    # h11 merges equal Content-Length fields into one; llhttp refuses the repeat (RFC 9112 §6.3).
    "repeated_equal_content_length": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc", 400, True, None
    ),
    "repeated_content_length_two_hosts_odd_version": (  # llhttp: before Host and the version
        b"POST / HTTP/9.9\r\nHost: x\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", 400, True, None
    ),
    "chunked_not_last": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, True, None),
    "chunked_then_other_field": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 400, True, None
    ),
    # Found by `make fuzz-ci`: chunked applied twice, another field between (RFC 9112 §6.1: a 400).
    "chunked_twice_field_between": (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n", 400, True, None
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


def test_more_distinct_field_names_than_the_name_cache_holds(server: RunningServer) -> None:
    """rules.lower_name keeps FIELD_NAMES_LIMIT names; past that (emptied and refilled) every
    name still arrives lower-cased, on both parsers."""
    from roadrunner.protocols.http1.rules import FIELD_NAMES_LIMIT

    per_request = 90  # under --limit-request-fields
    for first in range(0, FIELD_NAMES_LIMIT + 2 * per_request, per_request):
        names = [b"X-Name-%d" % n for n in range(first, first + per_request)]
        request = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(n + b": v\r\n" for n in names) + b"\r\n"
        data, closed = exchange(server.port, request)
        assert status_of(data) == 200 and not closed, data
        echo = b"host=x;" + b";".join(n.lower() + b"=v" for n in names) + b"|"
        assert data.partition(b"\r\n\r\n")[2].startswith(echo), data


def test_trailer_split_across_reads_is_431(server: RunningServer) -> None:
    """A 30 KiB trailer field in two reads: 431 past the trailer's own budget on both parsers.

    The first read is past h11's incomplete-event bound, which was answered 414 on h11.
    """
    first = CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-T: " + b"t" * 25600
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(first)
        time.sleep(0.2)  # the server reads the first part on its own
        data = b""
        with contextlib.suppress(OSError):  # a 431 may come (and the close) before the second part
            sock.sendall(b"t" * 5120 + b"\r\n\r\n")
            while chunk := sock.recv(65536):
                data += chunk
    assert status_of(data) == 431, data
    assert b"connection: close" in data.lower()


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


def test_differential_mutations_agree() -> None:
    """Seeded mutations of valid requests: both parsers serve them alike or refuse them alike."""
    parser_configs = h1_driver.configs()
    rng = random.Random(15)
    error_log = logging.getLogger("roadrunner.error")
    disagreements: list[str] = []

    async def main() -> None:
        started = time.monotonic()
        for _ in range(FUZZ_CASES):
            data = mutate(rng, rng.choice(SEEDS))
            # Segment boundaries too: the same cuts for both parsers.
            cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(0, 2), len(data) - 1)))
            fast = await h1_driver.outcome("httptools", parser_configs["httptools"], data, cuts)
            strict = await h1_driver.outcome("h11", parser_configs["h11"], data, cuts)
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


def test_pipelined_request_refused_in_its_body_gets_its_400_after_the_one_before() -> None:
    """Found by `make fuzz-ci`: a pipelined chunked request whose chunk-size line is malformed,
    queued behind a request still being answered. On httptools the refused request stayed in the
    pipeline, was run as a disconnected request after the first response, and the connection
    neither sent its 400 nor closed; h11 refused it at once. Both now answer the first request,
    then 400 and close (RFC 9112 §9.3.2: responses in request order)."""
    wire = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\x1d\nabc\r\n0\r\n\r\n")
    parser_configs = h1_driver.configs()
    error_log = logging.getLogger("roadrunner.error")
    level = error_log.level
    error_log.setLevel(logging.CRITICAL)
    try:
        for cuts in ([], [24, 27, 40, 61, 78]):
            fast = asyncio.run(h1_driver.outcome("httptools", parser_configs["httptools"], wire, cuts))
            strict = asyncio.run(h1_driver.outcome("h11", parser_configs["h11"], wire, cuts))
            assert fast == strict
            seen, _statuses, closed = fast
            assert [scope["method"] for scope, _ in seen] == ["POST"] and closed
    finally:
        error_log.setLevel(level)
