"""PROXY protocol end to end: raw sockets send a header, then HTTP (plain and TLS)."""

from __future__ import annotations

import json
import socket
import ssl
from typing import Any

import pytest

from roadrunner.proxy_protocol import build_v1, build_v2
from tests.helpers import raw_request, run_server, status_of

REQUEST = b"GET /who HTTP/1.1\r\nHost: example\r\n\r\n"
CLOSE_REQUEST = b"GET /who HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n"


async def whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the addresses and scheme the server put in the scope."""
    body = json.dumps(
        {"client": scope["client"], "server": scope["server"], "scheme": scope["scheme"]}
    ).encode()
    await send({
        "type": "http.response.start", "status": 200,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


def read_response(sock: socket.socket) -> bytes:
    """Read one Content-Length response (or until close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def body_json(response: bytes) -> Any:
    assert status_of(response) == 200, response
    return json.loads(response.partition(b"\r\n\r\n")[2])


def tls_exchange(port: int, header: bytes, context: ssl.SSLContext, request: bytes) -> bytes:
    """Send the PROXY header in clear, then TLS, then request; return the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(header)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(request)
            return read_response(tls)


def assert_closed_without_answer(port: int, data: bytes) -> None:
    """The server closes the connection and never answers it as HTTP."""
    assert raw_request(port, data) == b""


# -- plain TCP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_v1_sets_client_and_server(http: str, loop: str) -> None:
    with run_server(whoami, proxy_protocol="v1", http=http, loop=loop) as server:
        header = build_v1(("203.0.113.7", 51234), ("198.51.100.9", 443))
        seen = body_json(raw_request(server.port, header + CLOSE_REQUEST))
    assert seen == {
        "client": ["203.0.113.7", 51234], "server": ["198.51.100.9", 443], "scheme": "http",
    }


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_v2_ipv6_with_tlvs_over_keep_alive(loop: str) -> None:
    header = build_v2(("2001:db8::5", 4000), ("2001:db8::1", 80), tlvs=[(0x01, b"h2"), (0xEA, b"id")])
    with run_server(whoami, proxy_protocol="v2", loop=loop) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(header + REQUEST)
            first = body_json(read_response(sock))
            sock.sendall(REQUEST)  # the second request on the connection keeps the addresses
            second = body_json(read_response(sock))
    assert first == second
    assert first["client"] == ["2001:db8::5", 4000]
    assert first["server"] == ["2001:db8::1", 80]


def test_header_and_request_in_separate_writes() -> None:
    header = build_v1(("192.0.2.44", 1234), ("192.0.2.1", 80))
    with run_server(whoami, proxy_protocol="auto") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for index in range(0, len(header), 7):
                sock.sendall(header[index:index + 7])
            sock.sendall(CLOSE_REQUEST)
            seen = body_json(read_response(sock))
    assert seen["client"] == ["192.0.2.44", 1234]


@pytest.mark.parametrize(
    "header",
    [b"PROXY UNKNOWN\r\n", build_v2(None, None, local=True), build_v2(None, None)],
    ids=["v1-unknown", "v2-local", "v2-unspec"],
)
def test_headers_without_addresses_keep_the_socket_addresses(header: bytes) -> None:
    with run_server(whoami, proxy_protocol="auto") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            local_port = sock.getsockname()[1]
            sock.sendall(header + CLOSE_REQUEST)
            seen = body_json(read_response(sock))
    assert seen["client"] == ["127.0.0.1", local_port]
    assert seen["server"] == ["127.0.0.1", server.port]


@pytest.mark.parametrize(
    "mode, data",
    [
        ("auto", CLOSE_REQUEST),  # no header at all
        ("auto", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n" + CLOSE_REQUEST),  # malformed
        ("auto", b"PROXY TCP4 1.2.3.4 " + b"9" * 120),  # too long
        ("v1", build_v2(("1.2.3.4", 1), ("5.6.7.8", 2)) + CLOSE_REQUEST),  # wrong version
        ("v2", build_v1(("1.2.3.4", 1), ("5.6.7.8", 2)) + CLOSE_REQUEST),
        ("v2", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x08" + bytes(8) + CLOSE_REQUEST),
    ],
    ids=["missing", "malformed", "too-long", "v2-on-v1", "v1-on-v2", "short-address-block"],
)
def test_bad_header_is_closed_never_parsed_as_http(mode: str, data: bytes) -> None:
    with run_server(whoami, proxy_protocol=mode) as server:
        assert_closed_without_answer(server.port, data)
        # The server keeps serving everyone else.
        good = build_v1(("10.9.8.7", 1), ("10.0.0.1", 2)) if mode != "v2" else build_v2(
            ("10.9.8.7", 1), ("10.0.0.1", 2))
        assert body_json(raw_request(server.port, good + CLOSE_REQUEST))["client"][0] == "10.9.8.7"


def test_truncated_header_then_eof_is_closed() -> None:
    with run_server(whoami, proxy_protocol="auto") as server:
        assert raw_request(server.port, b"PROXY TCP4 1.2.3.4", shut_write=True) == b""
        assert raw_request(server.port, b"", shut_write=True) == b""
        assert status_of(raw_request(server.port, b"PROXY UNKNOWN\r\n" + CLOSE_REQUEST)) == 200


def test_untrusted_source_is_refused() -> None:
    header = build_v1(("203.0.113.7", 51234), ("198.51.100.9", 443))
    with run_server(whoami, proxy_protocol="v1", proxy_protocol_allow_ips="10.0.0.0/8") as server:
        assert_closed_without_answer(server.port, header + CLOSE_REQUEST)
    with run_server(whoami, proxy_protocol="v1", proxy_protocol_allow_ips="10.0.0.0/8,127.0.0.1") as server:
        assert status_of(raw_request(server.port, header + CLOSE_REQUEST)) == 200


def test_header_read_timeout() -> None:
    with run_server(whoami, proxy_protocol="v1", timeout_request_header=0.2) as server:
        # Only part of a header, then silence: the server closes after the header timeout.
        assert_closed_without_answer(server.port, b"PROXY TCP4 1.2.")
        assert_closed_without_answer(server.port, b"")


def test_shutdown_closes_connections_inside_the_header() -> None:
    with run_server(whoami, proxy_protocol="v1") as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"PROXY TCP4")
        # The reader is registered as a connection while it waits for the header.
        body_json(raw_request(server.port, b"PROXY UNKNOWN\r\n" + CLOSE_REQUEST))
    with sock:
        assert sock.recv(100) == b""


def test_limit_concurrency_counts_connections_inside_the_header() -> None:
    # Two open connections (one still inside its header) reach --limit-concurrency 2.
    with run_server(whoami, proxy_protocol="v1", limit_concurrency=2) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
            idle.sendall(b"PROXY UNKNOWN\r")  # still inside its header
            response = raw_request(server.port, b"PROXY UNKNOWN\r\n" + CLOSE_REQUEST)
            assert status_of(response) == 503
            idle.sendall(b"\n" + CLOSE_REQUEST)
            assert status_of(read_response(idle)) == 200


# -- TLS: the header arrives before the ClientHello -------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("version", [1, 2])
def test_tls_after_header(
    loop: str, version: int, tls_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    source, destination = ("198.51.100.20", 61000), ("192.0.2.80", 443)
    header = build_v1(source, destination) if version == 1 else build_v2(source, destination)
    with run_server(
        whoami, proxy_protocol="auto", loop=loop,
        ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
    ) as server:
        seen = body_json(tls_exchange(server.port, header, client_ssl_context, CLOSE_REQUEST))
    assert seen == {"client": list(source), "server": list(destination), "scheme": "https"}


def test_tls_keep_alive_and_bad_handshake(
    tls_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    header = build_v2(("198.51.100.21", 1), ("192.0.2.80", 443))
    with run_server(
        whoami, proxy_protocol="v2",
        ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
    ) as server:
        # Plain HTTP where TLS is expected after a valid header: the handshake fails, closed.
        assert_closed_without_answer(server.port, header + CLOSE_REQUEST)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(header)
            with client_ssl_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(REQUEST)
                first = body_json(read_response(tls))
                tls.sendall(REQUEST)
                second = body_json(read_response(tls))
    assert first == second and first["client"] == ["198.51.100.21", 1]


def test_tls_handshake_timeout_uses_header_timeout(tls_files: dict[str, str]) -> None:
    with run_server(
        whoami, proxy_protocol="v1", timeout_request_header=0.3,
        ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
    ) as server:
        # A valid header, then no ClientHello: closed once the header timeout expires.
        assert_closed_without_answer(server.port, b"PROXY UNKNOWN\r\n")


def test_tls_untrusted_source_is_refused(tls_files: dict[str, str]) -> None:
    with run_server(
        whoami, proxy_protocol="v1", proxy_protocol_allow_ips="192.0.2.1",
        ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
    ) as server:
        assert_closed_without_answer(server.port, b"PROXY UNKNOWN\r\n")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_tls_request_sent_with_the_client_finished(
    loop: str, tls_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    """Early application data (in the segment that completes the handshake) is not lost."""
    header = build_v1(("198.51.100.30", 4321), ("192.0.2.80", 443))
    with run_server(
        whoami, proxy_protocol="v1", loop=loop,
        ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
    ) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = client_ssl_context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
            raw.sendall(header)
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    data = raw.recv(65536)
                    assert data, "server closed during the handshake"
                    incoming.write(data)
            tls.write(CLOSE_REQUEST)
            raw.sendall(outgoing.read())  # client Finished and the request in one write
            response = b""
            while True:
                try:
                    chunk = tls.read(65536)
                except ssl.SSLWantReadError:
                    data = raw.recv(65536)
                    if not data:
                        break
                    incoming.write(data)
                    continue
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
                if not chunk:
                    break
                response += chunk
    assert body_json(response)["client"] == ["198.51.100.30", 4321]


# -- every protocol reads the addresses from the same transport ----------------------------------


async def whoami_everywhere(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """whoami for HTTP; for WebSocket, accept and send the same JSON as one text message."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(
            {"client": scope["client"], "server": scope["server"], "scheme": scope["scheme"]})})
        await send({"type": "websocket.close", "code": 1000})
        return
    await whoami(scope, receive, send)


def test_websocket_sees_the_proxied_client() -> None:
    from websockets.sync.client import connect

    header = build_v1(("203.0.113.50", 40001), ("198.51.100.1", 80))
    with run_server(whoami_everywhere, proxy_protocol="v1") as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(header)
        with connect(f"ws://127.0.0.1:{server.port}/", sock=sock) as websocket:
            seen = json.loads(websocket.recv(timeout=5))
    assert seen["client"] == ["203.0.113.50", 40001]
    assert seen["server"] == ["198.51.100.1", 80]


def test_http2_over_tls_sees_the_proxied_client(tls_files: dict[str, str]) -> None:
    import h2.config
    import h2.connection
    import h2.events

    context = ssl.create_default_context(cafile=tls_files["cafile"])
    context.set_alpn_protocols(["h2"])
    header = build_v2(("2001:db8::99", 5555), ("2001:db8::1", 443))
    with run_server(
        whoami_everywhere, proxy_protocol="v2",
        ssl_certfile=tls_files["certfile"], ssl_keyfile=tls_files["keyfile"],
    ) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(header)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.selected_alpn_protocol() == "h2"
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                conn.initiate_connection()
                conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "https"),
                                      (":authority", "127.0.0.1")], end_stream=True)
                tls.sendall(conn.data_to_send())
                body, ended = b"", False
                while not ended:
                    data = tls.recv(65536)
                    assert data, "server closed the h2 connection"
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.DataReceived):
                            body += event.data
                            conn.acknowledge_received_data(len(event.data), event.stream_id)
                        elif isinstance(event, h2.events.StreamEnded):
                            ended = True
                    tls.sendall(conn.data_to_send())
    seen = json.loads(body)
    assert seen == {"client": ["2001:db8::99", 5555], "server": ["2001:db8::1", 443],
                    "scheme": "https"}
