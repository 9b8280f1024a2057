"""HTTP/2 end to end: httpx over TLS (ALPN h2), h2c prior knowledge and Upgrade, raw frames."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import threading
from typing import Any

import httpx
import pytest
from hyperframe.frame import GoAwayFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame

from roadrunner.protocols.http2.guards import guard_counters
from tests.helpers import read_body, run_server
from tests.integration.test_http2_support import RawH2, request_headers

# Every test here runs once per HTTP/2 engine (nghttp2, h2): see the http2_engine fixture.
pytestmark = pytest.mark.usefixtures("http2_engine")

PROTOCOL_ERROR, REFUSED_STREAM, CANCEL = 0x1, 0x7, 0x8


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what the server told the app: the scope and the request body."""
    body = await read_body(receive)
    headers = dict(scope["headers"])
    text = (
        f"{scope['http_version']}|{scope['method']}|{scope['scheme']}|{scope['path']}|"
        f"{scope['raw_path'].decode()}|{scope['query_string'].decode()}|"
        f"{headers.get(b'host', b'').decode()}|{headers.get(b'cookie', b'').decode()}|{len(body)}"
    )
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"connection", b"keep-alive")]})
    await send({"type": "http.response.body", "body": text.encode()})


def tls_server(app: Any, tls_files: dict[str, str], **kwargs: Any) -> Any:
    return run_server(app, ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
                      **kwargs)


def test_httpx_negotiates_h2_over_tls(tls_files: dict[str, str],
                                      client_ssl_context: ssl.SSLContext) -> None:
    with tls_server(echo_app, tls_files) as server, httpx.Client(
        http2=True, verify=client_ssl_context
    ) as client:
        response = client.get(server.url + "/a%20b/c?x=1&y=2", headers={"cookie": "a=1"})
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert "connection" not in response.headers  # RFC 9113 §8.2.2
        assert response.headers["server"] == "roadrunner"
        version, method, scheme, path, raw, query, host, cookie, size = response.text.split("|")
        assert (version, method, scheme) == ("2", "GET", "https")
        assert (path, raw, query) == ("/a b/c", "/a%20b/c", "x=1&y=2")
        assert host == f"127.0.0.1:{server.port}"
        posted = client.post(server.url + "/", content=b"x" * 100_000)
        assert posted.text.endswith("|100000")
        # Many requests multiplexed on the one connection.
        assert all(client.get(server.url + f"/{i}").status_code == 200 for i in range(20))


def test_http11_client_still_served_on_tls(tls_files: dict[str, str],
                                           client_ssl_context: ssl.SSLContext) -> None:
    with tls_server(echo_app, tls_files) as server, httpx.Client(verify=client_ssl_context) as c:
        response = c.get(server.url + "/")
        assert response.http_version == "HTTP/1.1"
        assert response.text.startswith("1.1|GET|https")


def test_tls_h2_only_listener(tls_files: dict[str, str],
                              client_ssl_context: ssl.SSLContext) -> None:
    with tls_server(echo_app, tls_files, protocols="h2") as server:
        with RawH2(server.port, tls=client_ssl_context) as client:
            headers = [(b":scheme", b"https") if n == b":scheme" else (n, v)
                       for n, v in request_headers()]
            client.request(1, headers)
            assert client.stream_outcome(1)["body"].startswith(b"2|GET|https")


def test_prior_knowledge_h2c_and_h1_share_a_port() -> None:
    with run_server(echo_app, protocols="h1,h2") as server:
        with RawH2(server.port) as client:
            client.request(1, request_headers(b"/pk", b"POST"), body=b"hello")
            outcome = client.stream_outcome(1)
            assert outcome["status"] == 200
            assert outcome["body"] == b"2|POST|http|/pk|/pk||127.0.0.1||5"
        assert httpx.get(server.url + "/h1").text.startswith("1.1|GET|http|/h1")


def test_h2_only_plaintext_is_prior_knowledge() -> None:
    with run_server(echo_app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/only"))
        assert client.stream_outcome(1)["body"].startswith(b"2|GET|http|/only")


def h2c_upgrade(port: int, body: bytes = b"", settings: bytes | None = None) -> tuple[bytes, RawH2]:
    """Send an HTTP/1.1 Upgrade: h2c request; return the 101 head and a RawH2 on that socket."""
    if settings is None:
        frame = SettingsFrame(0)
        frame.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 65535}
        settings = base64.urlsafe_b64encode(frame.serialize_body()).rstrip(b"=")
    client = RawH2(port, preface=False)
    head = (
        b"POST /up?q=1 HTTP/1.1\r\nHost: example\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    client.send_raw(head + body)
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = client.sock.recv(1)
        if not chunk:
            break
        response += chunk
    return response, client


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("body", [b"", b"upload-body"])
def test_h2c_upgrade_answers_request_as_stream_1(http: str, body: bytes) -> None:
    with run_server(echo_app, protocols="h1,h2", http=http) as server:
        head, client = h2c_upgrade(server.port, body)
        with client:
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"upgrade: h2c" in head.lower()
            client.send_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
            outcome = client.stream_outcome(1)
            assert outcome["status"] == 200
            assert outcome["body"] == b"2|POST|http|/up|/up|q=1|example||%d" % len(body)
            client.request(3, request_headers(b"/next"))
            assert client.stream_outcome(3)["body"].startswith(b"2|GET|http|/next")


def test_h2c_upgrade_without_valid_settings_stays_http11() -> None:
    with run_server(echo_app, protocols="h1,h2") as server:
        head, client = h2c_upgrade(server.port, settings=b"!!!")
        with client:
            assert head.startswith(b"HTTP/1.1 200 ")


def test_h2c_upgrade_ignored_over_tls(tls_files: dict[str, str],
                                      client_ssl_context: ssl.SSLContext) -> None:
    # RFC 9113 §3.1: h2c is never used over TLS; the request is answered over HTTP/1.1.
    with tls_server(echo_app, tls_files) as server, httpx.Client(verify=client_ssl_context) as c:
        response = c.get(server.url + "/", headers={
            "connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c", "http2-settings": "AAMAAABk"})
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"


def test_h2c_upgrade_ignored_when_h2_disabled() -> None:
    with run_server(echo_app) as server:
        head, client = h2c_upgrade(server.port)
        with client:
            assert head.startswith(b"HTTP/1.1 200 ")


def test_cookies_joined_and_authority_becomes_host() -> None:
    with run_server(echo_app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/", cookie=b"a=1") + [(b"cookie", b"b=2")])
        text = client.stream_outcome(1)["body"].decode()
        assert text.split("|")[6:8] == ["127.0.0.1", "a=1; b=2"]  # RFC 9113 §8.2.3
        headers = [item for item in request_headers() if item[0] != b":authority"]
        client.request(3, headers + [(b"host", b"explicit")])
        assert client.stream_outcome(3)["body"].decode().split("|")[6] == "explicit"
        # RFC 9113 §8.3.1: Host differing from :authority is malformed.
        client.request(5, request_headers(b"/", host=b"other"))
        assert client.stream_outcome(5)["reset"] == PROTOCOL_ERROR


async def trailers_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
    await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
    await send({"type": "http.response.body", "body": b"data", "more_body": False})
    await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")],
                "more_trailers": False})


def test_trailers_and_early_hints() -> None:
    with run_server(trailers_app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/", te=b"trailers"))
        outcome = client.stream_outcome(1)
        assert outcome["informational"][0][0] == (b":status", b"103")
        assert (b"link", b"</style.css>; rel=preload") in outcome["informational"][0]
        assert outcome["body"] == b"data"
        assert outcome["trailers"] == [(b"grpc-status", b"0")]
        client.request(3)  # no TE: trailers -> the body simply ends
        outcome = client.stream_outcome(3)
        assert outcome["body"] == b"data" and outcome["trailers"] == []


def test_large_response_streams_within_flow_control_windows() -> None:
    chunk = b"z" * 65536

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(32):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1)
        outcome = client.stream_outcome(1)  # acknowledges each DATA: the window keeps moving
        assert len(outcome["body"]) == 32 * 65536


def test_slow_app_pushes_back_on_upload() -> None:
    """The server grants window only as the app reads: an app that does not read stalls the
    client at the initial window, instead of the server buffering the upload."""
    release = threading.Event()
    received: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        received.append(total)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(total).encode()})

    window = 65535
    with run_server(app, protocols="h2", h2_initial_window_size=window) as server:
        with RawH2(server.port) as client:
            client.request(1, request_headers(b"/", b"POST"), end_stream=False)
            for _ in range(window // 16384):
                client.send(client.data(1, b"u" * 16384))
            client.send(client.data(1, b"u" * (window % 16384)))
            # The PING is answered after every DATA frame before it was processed: by then the
            # app has consumed nothing, so the server owes no stream window yet.
            assert client.is_alive()
            updates = [f for f in client.frames if isinstance(f, WindowUpdateFrame) and f.stream_id == 1]
            assert updates == []
            release.set()  # the app reads: the window comes back
            frame = client.wait_for(WindowUpdateFrame, stream_id=1)
            assert isinstance(frame, WindowUpdateFrame) and frame.window_increment >= window // 2
            client.send(client.data(1, b"", end_stream=True))
            assert client.stream_outcome(1)["body"] == str(window).encode()


def test_upload_larger_than_window_completes_when_app_reads() -> None:
    with run_server(echo_app, protocols="h2", h2_initial_window_size=65535) as server:
        with RawH2(server.port) as client:
            client.request(1, request_headers(b"/", b"POST"), end_stream=False)
            sent = 0
            total = 300_000
            while sent < total:
                size = min(16384, total - sent)
                # Wait for window when the server's initial window is used up.
                while sent + size > 65535 + sum(
                    f.window_increment for f in client.frames
                    if isinstance(f, WindowUpdateFrame) and f.stream_id == 1
                ):
                    assert client.read_frame() is not None
                client.send(client.data(1, b"b" * size, end_stream=sent + size == total))
                sent += size
            assert client.stream_outcome(1)["body"].endswith(b"|300000")


def test_client_reset_disconnects_and_cancels_app() -> None:
    events: list[str] = []
    started = threading.Event()
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        started.set()
        try:
            message = await receive()
            while message["type"] == "http.request":
                message = await receive()
            events.append(message["type"])
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            done.set()

    with run_server(app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/", b"POST"), end_stream=False)
        assert started.wait(5)
        client.send(RstStreamFrame(1, error_code=CANCEL))
        assert done.wait(5)
        assert events == ["http.disconnect", "cancelled"]
        assert client.is_alive()  # one stream's reset leaves the connection serving


def test_concurrent_streams_past_limit_are_refused() -> None:
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while not gate.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    before = guard_counters["refused_stream"]
    with run_server(app, protocols="h2", h2_max_concurrent_streams=2) as server:
        with RawH2(server.port) as client:
            for stream_id in (1, 3, 5):
                client.request(stream_id)
            assert client.stream_outcome(5)["reset"] == REFUSED_STREAM
            gate.set()
            assert client.stream_outcome(1)["body"] == b"ok"
            assert client.stream_outcome(3)["body"] == b"ok"
            client.request(7)  # a slot is free again
            assert client.stream_outcome(7)["body"] == b"ok"
    assert guard_counters["refused_stream"] == before + 1


def test_limit_concurrency_refuses_new_streams() -> None:
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while not gate.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, protocols="h2", limit_concurrency=1) as server, RawH2(server.port) as c:
        c.request(1)
        c.request(3)
        assert c.stream_outcome(3)["reset"] == REFUSED_STREAM
        gate.set()
        assert c.stream_outcome(1)["status"] == 204


def test_header_list_over_limit_gets_431_and_connection_lives() -> None:
    with run_server(echo_app, protocols="h2", h2_max_header_list_size=4096) as server:
        with RawH2(server.port) as client:
            client.request(1, request_headers(b"/", x_big=b"v" * 5000))
            assert client.stream_outcome(1)["status"] == 431
            client.request(3)
            assert client.stream_outcome(3)["status"] == 200


def test_request_body_limit() -> None:
    with run_server(echo_app, protocols="h2", limit_request_body=10) as server:
        with RawH2(server.port) as client:
            client.request(1, request_headers(b"/", b"POST", content_length=b"11"), body=b"x" * 11)
            assert client.stream_outcome(1)["status"] == 413
            client.request(3, request_headers(b"/", b"POST"), body=b"y" * 20)
            assert client.stream_outcome(3)["status"] == 413
            client.request(5, request_headers(b"/", b"POST"), body=b"z" * 10)
            assert client.stream_outcome(5)["body"].endswith(b"|10")


def test_graceful_shutdown_sends_goaway_and_finishes_in_flight() -> None:
    started = threading.Event()
    gate = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        started.set()
        while not gate.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished"})

    with run_server(app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1)
        assert started.wait(5)
        server.server.should_exit = True
        goaway = client.wait_for(GoAwayFrame)
        assert isinstance(goaway, GoAwayFrame)
        assert (goaway.error_code, goaway.last_stream_id) == (0, 1)
        gate.set()
        outcome = client.stream_outcome(1)
        assert outcome["body"] == b"finished"
        assert client.read_frame() is None  # closed once the stream completed


def test_app_error_gives_500_and_reset_after_start() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        raise RuntimeError("boom")

    with run_server(app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/early"))
        assert client.stream_outcome(1)["status"] == 500
        client.request(3, request_headers(b"/late"))
        assert client.stream_outcome(3)["reset"] == 0x2  # INTERNAL_ERROR
        assert client.is_alive()


def test_idle_connection_is_closed_with_goaway() -> None:
    before = guard_counters["idle_timeout"]
    with run_server(echo_app, protocols="h2", timeout_keep_alive=0.2) as server:
        with RawH2(server.port) as client:
            goaway = client.goaway()
            assert goaway is not None and goaway.error_code == 0
    assert guard_counters["idle_timeout"] == before + 1


def test_idle_clock_restarts_after_each_request() -> None:
    before = guard_counters["idle_timeout"]
    with run_server(echo_app, protocols="h2", timeout_keep_alive=1.0) as server:
        with RawH2(server.port) as client:
            for stream_id in (1, 3, 5):  # 1.5 s of traffic, more than the 1 s timeout
                threading.Event().wait(0.5)
                client.request(stream_id, request_headers(b"/"))
                assert client.stream_outcome(stream_id)["status"] == 200
            assert client.is_alive()
            goaway = client.goaway()  # and then idle for 1 s
            assert goaway is not None and goaway.error_code == 0 and goaway.last_stream_id == 5
    assert guard_counters["idle_timeout"] == before + 1


def test_app_headers_replace_server_defaults() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"server", b"mine"), (b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with run_server(app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/"))
        names = [name for name, _ in client.stream_outcome(1)["headers"]]
        assert names[0] == b":status" and names.count(b"server") == 1 and b"date" in names
        client.request(3, request_headers(b"/"))
        assert (b"server", b"mine") in client.stream_outcome(3)["headers"]


def test_preface_timeout_closes_silent_connection() -> None:
    before = guard_counters["preface_timeout"]
    with run_server(echo_app, protocols="h2", timeout_request_header=0.2) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    assert guard_counters["preface_timeout"] == before + 1


def test_selector_times_out_silent_plaintext_client() -> None:
    with run_server(echo_app, protocols="h1,h2", timeout_request_header=0.2) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            assert sock.recv(100) == b""


def test_early_hint_and_head_request_bodies() -> None:
    with run_server(echo_app, protocols="h2") as server, RawH2(server.port) as client:
        client.request(1, request_headers(b"/", b"HEAD"))
        outcome = client.stream_outcome(1)
        assert outcome["status"] == 200 and outcome["body"] == b""


def test_every_h2_limit_has_a_cli_flag() -> None:
    from click.testing import CliRunner

    from roadrunner.cli import main

    text = CliRunner().invoke(main, ["--help"], terminal_width=200).output
    for flag in ("--h2-max-concurrent-streams", "--h2-initial-window-size",
                 "--h2-connection-window-size", "--h2-max-frame-size", "--h2-max-header-list-size",
                 "--h2-max-header-block-size", "--h2-max-header-table-size", "--h2-max-reset-rate",
                 "--h2-max-ping-rate", "--h2-max-settings-rate", "--h2-max-empty-frame-rate"):
        assert flag in text
