"""HTTP/1.1 behaviour over real sockets, identical on the httptools and h11 paths."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from tests.helpers import raw_request, read_body, run_server, status_of

pytestmark = pytest.mark.parametrize("http", ["httptools", "h11"])


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo the request body; report method, path and a few scope fields in headers."""
    assert scope["type"] == "http"
    body = await read_body(receive)
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"x-method", scope["method"].encode()),
            (b"x-path", scope["path"].encode("utf-8")),
            (b"x-raw-path", scope["raw_path"]),
            (b"x-query", scope["query_string"]),
            (b"x-version", scope["http_version"].encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})


def test_get_and_post_echo(http: str) -> None:
    with run_server(echo_app, http=http) as server, httpx.Client(base_url=server.url) as client:
        response = client.get("/a%20b/c?x=1&y=2")
        assert response.status_code == 200
        assert response.headers["x-path"] == "/a b/c"
        assert response.headers["x-raw-path"] == "/a%20b/c"
        assert response.headers["x-query"] == "x=1&y=2"
        assert response.headers["server"] == "roadrunner"
        assert "date" in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        payload = bytes(range(256)) * 400
        response = client.post("/echo", content=payload)
        assert response.content == payload


def test_fragment_in_the_target_is_not_part_of_path_or_query(http: str) -> None:
    # RFC 9112 §3.2 has no fragment; one a client sends anyway is cut off the path (as uvicorn).
    with run_server(echo_app, http=http) as server:
        response = raw_request(server.port, b"GET /a/b#frag HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(response) == 200
        head = response.partition(b"\r\n\r\n")[0].lower()
        assert b"\r\nx-path: /a/b\r\n" in head
        assert b"\r\nx-raw-path: /a/b\r\n" in head


def test_keep_alive_reuses_connection(http: str) -> None:
    with run_server(echo_app, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            for index in range(3):
                sock.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % index)
                data = b""
                while not data.endswith(b"0\r\n\r\n"):
                    data += sock.recv(4096)
                assert data.startswith(b"HTTP/1.1 200")


def test_pipelined_requests_answered_in_order(http: str) -> None:
    async def slow_first(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(0.2)
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    with run_server(slow_first, http=http) as server:
        data = raw_request(
            server.port,
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b"/slow") < data.index(b"/second") < data.index(b"/third")


def test_chunked_request_body(http: str) -> None:
    with run_server(echo_app, http=http) as server:
        data = raw_request(
            server.port,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
    assert status_of(data) == 200
    assert b"hello world" in data


def test_http10_response_is_close_delimited(http: str) -> None:
    async def no_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part1", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})

    with run_server(no_length, http=http) as server:
        data = raw_request(server.port, b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"part1part2"


def test_head_response_has_no_body(http: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})

    with run_server(app, http=http) as server:
        data = raw_request(server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.endswith(b"\r\n\r\n")
    assert b"content-length: 5" in data


def test_expect_100_continue_only_when_body_is_read(http: str) -> None:
    async def reader(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/read":
            await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with run_server(reader, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(b"abc")
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        data = raw_request(
            server.port,
            b"POST /skip HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        assert data.startswith(b"HTTP/1.1 200")
        assert b"100 Continue" not in data


def test_streaming_response_and_trailers(http: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.trailers" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"42")]})

    with run_server(app, http=http) as server:
        with_te = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
        without = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert with_te.endswith(b"1\r\na\r\n1\r\nb\r\n0\r\nx-checksum: 42\r\n\r\n")
    assert without.endswith(b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n")


def test_early_hint(http: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http=http) as server:
        data = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200")


def test_pathsend(http: str, tmp_path: Any) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"x" * 200_000)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"200000")]})
        await send({"type": "http.response.pathsend", "path": str(target)})

    with run_server(app, http=http) as server:
        response = httpx.get(server.url + "/")
    assert response.content == b"x" * 200_000


def test_scope_fields(http: str) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http=http, root_path="/api") as server:
        response = httpx.get(server.url + "/items?q=1", headers={"X-Custom": "Value"})
    assert response.status_code == 204
    assert seen["type"] == "http"
    assert seen["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert seen["http_version"] == "1.1"
    assert seen["scheme"] == "http"
    assert seen["path"] == "/api/items"
    assert seen["raw_path"] == b"/api/items"
    assert seen["root_path"] == "/api"
    assert seen["query_string"] == b"q=1"
    assert (b"x-custom", b"Value") in seen["headers"]
    assert seen["client"][0] == "127.0.0.1"
    assert seen["server"] == ("127.0.0.1", server.port)
    assert seen["state"] == {}


def test_absolute_and_asterisk_form(http: str) -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http=http) as server:
        absolute = raw_request(
            server.port, b"GET http://example.com/abs?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        )
        asterisk = raw_request(server.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        bad_asterisk = raw_request(server.port, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(absolute) == 200 and status_of(asterisk) == 200
    assert seen == ["/abs", "*"]
    assert status_of(bad_asterisk) == 400


# -- limits ------------------------------------------------------------------------------------


def test_request_line_too_long_is_414(http: str) -> None:
    with run_server(echo_app, http=http, limit_request_line=1024) as server:
        data = raw_request(server.port, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        ok = raw_request(server.port, b"GET /" + b"a" * 900 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(data) == 414
    assert status_of(ok) == 200


def test_header_block_too_large_is_431(http: str) -> None:
    with run_server(echo_app, http=http, limit_request_headers_size=4096) as server:
        data = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    assert status_of(data) == 431


def test_too_many_header_fields_is_431(http: str) -> None:
    with run_server(echo_app, http=http, limit_request_fields=10) as server:
        fields = b"".join(b"X-%d: v\r\n" % i for i in range(11))
        data = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        fields_ok = b"".join(b"X-%d: v\r\n" % i for i in range(8))
        ok = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields_ok + b"\r\n")
    assert status_of(data) == 431
    assert status_of(ok) == 200


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"


def test_trailer_section_has_the_head_limits_of_its_own(http: str) -> None:
    """RFC 9112 §7.1.2: the trailer section gets its own --limit-request-fields/-headers-size."""
    head = CHUNKED_HEAD + b"Connection: close\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 300) for i in range(7))
    trailer = b"".join(b"T-%d: %s\r\n" % (i, b"v" * 300) for i in range(8))  # with the head's: past both
    with run_server(echo_app, http=http, limit_request_fields=10, limit_request_headers_size=4096) as server:
        ok = raw_request(server.port, head + b"\r\n3\r\nabc\r\n0\r\n" + trailer + b"\r\n")
        many = b"".join(b"T-%d: v\r\n" % i for i in range(11))
        too_many = raw_request(server.port, CHUNKED_HEAD + b"\r\n0\r\n" + many + b"\r\n")
        big = raw_request(server.port, CHUNKED_HEAD + b"\r\n0\r\nT: " + b"t" * 4100 + b"\r\n\r\n")
    assert status_of(ok) == 200, ok
    assert ok.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert status_of(too_many) == 431
    assert status_of(big) == 431


def test_trailer_past_h11_incomplete_event_bound_is_431(http: str) -> None:
    """h11's bound tripping in a trailer section is a 431, not the request line's 414."""
    config = {"h11_max_incomplete_event_size": 1024, "limit_request_headers_size": 4096}
    with run_server(echo_app, http=http, **config) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
            sock.sendall(CHUNKED_HEAD + b"\r\n3\r\nabc\r\n0\r\nT: " + b"t" * 2000)
            time.sleep(0.2)  # past h11's 1024 bytes, not yet past the trailer's 4096
            data = b""
            try:
                sock.sendall(b"t" * 3000 + b"\r\n\r\n")
                while chunk := sock.recv(65536):
                    data += chunk
            except OSError:
                pass  # the 431 and the close may come before the second part
    assert status_of(data) == 431, data


def test_body_limit_is_413(http: str) -> None:
    with run_server(echo_app, http=http, limit_request_body=1000) as server:
        declared = raw_request(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        chunked = raw_request(
            server.port,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"200\r\n" + b"a" * 512 + b"\r\n") * 3 + b"0\r\n\r\n",
        )
        ok = raw_request(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789")
    assert status_of(declared) == 413
    assert b"413" in chunked.split(b"\r\n")[0] or status_of(chunked) == 200 and b"413" in chunked
    assert status_of(ok) == 200


def test_slowloris_header_timeout_is_408(http: str) -> None:
    with run_server(echo_app, http=http, timeout_request_header=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHo")
            started = time.monotonic()
            data = b""
            while True:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                data += chunk
            assert time.monotonic() - started < 4
        assert status_of(data) == 408
        # the server still serves everyone else
        assert httpx.get(server.url + "/").status_code == 200


def test_idle_connection_closed_after_keep_alive(http: str) -> None:
    with run_server(echo_app, http=http, timeout_keep_alive=0.3) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                data += sock.recv(4096)
            assert sock.recv(1024) == b""  # closed by the keep-alive timer


# -- smuggling and malformed input ---------------------------------------------------------------

BAD_REQUESTS = {
    "cl_and_te": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "differing_cl": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    "negative_cl": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\nabc", 400),
    "non_numeric_cl": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3a\r\n\r\nabc", 400),
    "te_gzip": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc", 501),
    "te_gzip_chunked": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "bad_chunk_size": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    "bare_lf_chunk": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\r\n\r\n", 400),
    "missing_crlf_after_data": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n", 400),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    "nul_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    "cr_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400),
    "bad_header_name": (b"GET / HTTP/1.1\r\nHost: x\r\nX Y: ab\r\n\r\n", 400),
    "space_before_colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "bad_method": (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "missing_host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "double_host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "h2_preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "garbage": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_malformed_requests_rejected_and_server_keeps_serving(http: str, case: str) -> None:
    request, expected = BAD_REQUESTS[case]
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with run_server(app, http=http) as server:
        data = raw_request(server.port, request)
        assert status_of(data) == expected, data
        assert b"connection: close" in data.lower()
        assert calls == []
        assert httpx.get(server.url + "/after").text == "ok"


# -- app misbehaviour ------------------------------------------------------------------------------


def make_app(kind: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if kind == "raise_before_start":
            raise ValueError("boom")
        if kind == "return_without_response":
            return
        if kind == "bad_status":
            await send({"type": "http.response.start", "status": 99, "headers": []})
        if kind == "informational_status":
            await send({"type": "http.response.start", "status": 101, "headers": []})
        if kind == "crlf_header":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nInjected: 1")]})
        if kind == "str_header":
            await send({"type": "http.response.start", "status": 200, "headers": [("x", "y")]})
        if kind == "body_before_start":
            await send({"type": "http.response.body", "body": b"x"})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        if kind == "raise_after_start":
            raise ValueError("boom")
        if kind == "incomplete":
            await send({"type": "http.response.body", "body": b"abc", "more_body": True})
            return
        if kind == "too_long":
            await send({"type": "http.response.body", "body": b"x" * 20})
            return
        await send({"type": "http.response.body", "body": b"0123456789"})
        if kind == "send_after_complete":
            await send({"type": "http.response.body", "body": b"more"})

    return app


@pytest.mark.parametrize(
    "kind",
    ["raise_before_start", "return_without_response", "bad_status", "informational_status",
     "crlf_header", "str_header", "body_before_start"],
)
def test_app_errors_before_start_give_500(http: str, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    with run_server(make_app(kind), http=http) as server:
        response = httpx.get(server.url + "/")
        assert response.status_code == 500
        assert "injected" not in response.headers
        assert httpx.get(server.url + "/").status_code == 500  # and still serving


@pytest.mark.parametrize("kind", ["raise_after_start", "incomplete", "too_long"])
def test_app_errors_after_start_close_connection(http: str, kind: str) -> None:
    with run_server(make_app(kind), http=http) as server:
        data = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200")
        head, _, body = data.partition(b"\r\n\r\n")
        assert len(body) < 10  # the connection was closed, never a fake complete body


def test_send_after_complete_raises_and_response_stands(http: str) -> None:
    with run_server(make_app("send_after_complete"), http=http) as server:
        response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.content == b"0123456789"


def test_client_disconnect_gives_http_disconnect(http: str) -> None:
    got: list[Any] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        got.append(await receive())
        got.append(await receive())
        try:  # ASGI spec 2.4+: send() to a gone client raises an OSError subclass
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except OSError as exc:
            got.append(exc)
        done.set()

    with run_server(app, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
            time.sleep(0.2)
        assert done.wait(5)
    assert got[0] == {"type": "http.request", "body": b"01234", "more_body": True}
    assert got[1] == {"type": "http.disconnect"}
    assert isinstance(got[2], OSError)


def test_request_body_backpressure(http: str) -> None:
    """A slow app that reads nothing makes the server stop reading: the client's send blocks."""
    release = threading.Event()
    total = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal total
        while not release.is_set():
            await asyncio.sleep(0.02)
        more = True
        while more:
            message = await receive()
            total += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    size = 64 * 1024 * 1024
    with run_server(app, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
            sock.setblocking(False)
            sent = 0
            chunk = b"x" * 65536
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    sent += sock.send(chunk)
                except BlockingIOError:
                    time.sleep(0.01)
            assert sent < 16 * 1024 * 1024  # the server buffered only a bounded amount
            release.set()
            sock.setblocking(True)
            remaining = size - sent
            while remaining:
                remaining -= sock.send(chunk[: min(len(chunk), remaining)])
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    assert total == size


def test_slow_reader_makes_send_wait(http: str) -> None:
    """send() waits for the transport to drain instead of buffering a whole response."""
    progress: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(400):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            progress.append(index)
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            time.sleep(0.5)
            assert len(progress) < 100  # 25 MiB were not buffered for a reader that reads nothing
            received = 0
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
    assert len(progress) == 400
    assert received > 400 * 65536


def test_concurrency_limit_answers_503(http: str) -> None:
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while not gate.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    # As uvicorn, the limit counts open connections, the new one included: 2 allows 1 request.
    with run_server(app, http=http, limit_concurrency=2) as server:
        holder = socket.create_connection(("127.0.0.1", server.port))
        holder.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        data = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        gate.set()
        assert holder.recv(1024).startswith(b"HTTP/1.1 200")
        holder.close()
    assert status_of(data) == 503
    assert b"retry-after" not in data.lower()  # uvicorn's 503; --limit-concurrency-soft adds it


def test_custom_default_headers_and_no_server_date(http: str) -> None:
    with run_server(echo_app, http=http, headers=[("X-Env", "prod")], server_header=False,
                    date_header=False) as server:
        response = httpx.get(server.url + "/")
    assert response.headers["x-env"] == "prod"
    assert "server" not in response.headers
    assert "date" not in response.headers


def test_early_error_survives_a_large_unread_upload(http: str) -> None:
    """413 is sent before the body is read; lingering close keeps it from being reset away."""
    with run_server(echo_app, http=http, limit_request_body=1000) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n")
            try:
                sock.sendall(b"x" * 8_000_000)
            except OSError:
                pass
            data = sock.recv(1024)
    assert status_of(data) == 413


def test_response_head_leaves_while_the_app_waits_before_its_body(http: str) -> None:
    """The head is held back to leave with the first body chunk, but not past a suspension:
    clients on several connections each see their head while their app still waits."""
    release = threading.Event()

    async def head_then_wait(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4")]})
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"done"})

    with run_server(head_then_wait, http=http) as server:
        socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
        try:
            for sock in socks:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            for sock in socks:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    assert chunk, "connection closed before the head"
                    head += chunk
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert head.endswith(b"\r\n\r\n")  # the body has not been sent yet
            release.set()
            for sock in socks:
                assert sock.recv(4096) == b"done"
        finally:
            release.set()
            for sock in socks:
                sock.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_body_chunks_keep_their_framing(http: str, framing: str) -> None:
    """Chunks of 64 KiB and more leave beside the head / chunk framing instead of being joined
    to it: the bytes on the wire are the same, for the first, a middle and the last chunk."""
    small, large = b"s" * 100, bytes(range(256)) * 1024  # 256 KiB

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/octet-stream")]
        if framing == "content-length":
            headers.append((b"content-length", str(2 * len(large) + len(small)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": large, "more_body": True})
        await send({"type": "http.response.body", "body": small, "more_body": True})
        await send({"type": "http.response.body", "body": large})

    with run_server(app, http=http) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(2):  # the connection stays usable for the next request
            response = client.get("/")
            assert response.status_code == 200
            assert response.content == large + small + large
            assert ("transfer-encoding" in response.headers) == (framing == "chunked")


async def deny_unread(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A 401 before reading a byte of the request body (an auth check in front of an upload)."""
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-length", b"6")]})
    await send({"type": "http.response.body", "body": b"denied"})


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, read off a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed before the whole body"
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_after_an_early_answer_is_read_and_dropped_on_keep_alive(http: str, framing: str) -> None:
    """The app answered without reading its upload: the rest of the body is read and dropped,
    as uvicorn does, and the connection serves the next request; before, the unread body filled
    the finished request's buffer, reading paused at 64 KiB and the connection hung for good."""
    size = 1_000_000
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\n" + (
        b"Content-Length: %d\r\n\r\n" % size if framing == "content-length"
        else b"Transfer-Encoding: chunked\r\n\r\n")
    body = b"u" * size if framing == "content-length" else b"%x\r\n%s\r\n0\r\n\r\n" % (size, b"u" * size)
    with run_server(deny_unread, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(head + body[:8192])
            assert status_of(read_response(sock)) == 401
            sock.sendall(body[8192:])  # a megabyte nobody reads: 16 times the pause mark
            sock.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(read_response(sock)) == 401  # served on the same connection
        assert server.server.server_state.requests_done == 2


def test_client_stalling_a_body_after_an_early_answer_is_closed_by_keep_alive(http: str) -> None:
    """What is left of an answered request's body is only waited for as long as an idle
    keep-alive connection is (--timeout-keep-alive), then the connection closes."""
    with run_server(deny_unread, http=http, timeout_keep_alive=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"u" * 200_000)
            assert status_of(read_response(sock)) == 401
            started = time.monotonic()
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < 3
        deadline = time.monotonic() + 3  # the server's side ends once it sees the client's close
        while server.server.server_state.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not server.server.server_state.connections


def test_early_answer_to_an_unsent_100_continue_body_closes(http: str) -> None:
    """Answered before its 100 Continue, the client may never send the body it announced
    (RFC 9110 §10.1.1): the connection closes rather than take its next request for that body."""
    with run_server(deny_unread, http=http) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    assert status_of(data) == 401
    assert b"connection: close" in data.lower() and b"100 continue" not in data.lower()
