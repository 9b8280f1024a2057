"""HTTP/3: requests over real QUIC from the aioquic client to a real roadrunner server."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest

from roadrunner.config import Config, ConfigError
from tests.helpers import read_body, run_server
from tests.integration.test_http3_helpers import h3_connect, h3_server_kwargs


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo the request body; report the scope in headers."""
    assert scope["type"] == "http"
    body = await read_body(receive)
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"x-http-version", scope["http_version"].encode()),
            (b"x-method", scope["method"].encode()),
            (b"x-path", scope["path"].encode()),
            (b"x-query", scope["query_string"]),
            (b"x-host", dict(scope["headers"]).get(b"host", b"")),
            (b"x-scheme", scope["scheme"].encode()),
            (b"connection", b"keep-alive"),  # connection-specific: must not reach HTTP/3
        ],
    })
    await send({"type": "http.response.body", "body": bytes(body)})


def test_get_reports_http_version_3(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("GET", "/hello%20world?x=1")
            assert response.status == 200
            assert response.header(b"x-http-version") == b"3"
            assert response.header(b"x-path") == b"/hello world"
            assert response.header(b"x-query") == b"x=1"
            assert response.header(b"x-host") == b"localhost"
            assert response.header(b"x-scheme") == b"https"
            assert response.header(b"server") == b"roadrunner"
            assert response.header(b"connection") is None
            assert response.header(b"alt-svc") is None

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_post_echo_large_body_byte_identical(tls_files: dict[str, str]) -> None:
    payload = bytes(range(256)) * 400  # 100 kB

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("POST", "/echo", body=payload)
            assert response.status == 200
            assert bytes(response.body) == payload
            # many requests on one connection
            results = await asyncio.gather(
                *(client.request("POST", f"/{i}", body=b"x" * i) for i in range(50))
            )
            assert [len(r.body) for r in results] == list(range(50))

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_trailers_and_early_hints(tls_files: dict[str, str]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"trailer", b"x-checksum")]})
        await send({"type": "http.response.body", "body": b"part1", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            response = await client.request("GET", "/")
            assert response.informational[0][0] == 103
            assert (b"link", b"</style.css>; rel=preload") in response.informational[0][1]
            assert response.status == 200
            assert bytes(response.body) == b"part1part2"
            assert response.trailers == [(b"x-checksum", b"abc")]

    with run_server(app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_app_errors_give_500_or_reset(tls_files: dict[str, str]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        raise RuntimeError("boom")

    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            early = await client.request("GET", "/early")
            assert early.status == 500
            late = await client.request("GET", "/late")
            assert late.reset_code == 0x102  # H3_INTERNAL_ERROR: the response cannot be finished
            again = await client.request("GET", "/early")
            assert again.status == 500

    with run_server(app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port))


def test_alt_svc_advertised_on_tcp_responses(
    tls_files: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    def fetch(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client_ssl_context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                return data

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        head = fetch(server.port).split(b"\r\n\r\n")[0].lower()
        assert b'alt-svc: h3=":%d"; ma=86400' % server.port in head
    with run_server(echo_app, **h3_server_kwargs(tls_files, alt_svc=False)) as server:
        assert b"alt-svc" not in fetch(server.port).lower()


def test_h3_needs_a_certificate() -> None:
    with pytest.raises(ConfigError, match="h3"):
        Config("app:app", protocols="h1,h3")
    with pytest.raises(ConfigError, match="h3-max-connections"):
        Config("app:app", h3_max_connections=0)


def test_qpack_dynamic_table(tls_files: dict[str, str]) -> None:
    headers = [(b"cookie", b"session=" + b"c" * 200), (b"user-agent", b"test-agent/1.0 " * 5 + b"end")]

    async def main(port: int, capacity: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            for _ in range(20):
                response = await client.request("GET", "/", headers=headers)
                assert response.status == 200
            settings = client.h3.received_settings
            assert settings is not None
            assert settings[0x1] == capacity  # SETTINGS_QPACK_MAX_TABLE_CAPACITY
            assert settings[0x7] == (16 if capacity else 0)  # SETTINGS_QPACK_BLOCKED_STREAMS
            # With a table, the client's encoder inserts the repeated fields once.
            assert (client.h3._encoder_bytes_sent > 50) == bool(capacity)

    with run_server(echo_app, **h3_server_kwargs(tls_files)) as server:
        asyncio.run(main(server.port, 8192))
    kwargs = h3_server_kwargs(tls_files, h3_qpack_max_table_capacity=0, h3_qpack_blocked_streams=0)
    with run_server(echo_app, **kwargs) as server:
        asyncio.run(main(server.port, 0))


def test_connect_body_limit_and_request_trailers(tls_files: dict[str, str]) -> None:
    async def main(port: int) -> None:
        async with h3_connect(port, tls_files["cafile"]) as client:
            connect = await client.request("CONNECT", "/")
            assert connect.status == 501
            too_big = await client.request("POST", "/", headers=[(b"content-length", b"100")],
                                           body=b"x" * 100)
            assert too_big.status == 413
            # No content-length: the body is counted as it streams in.
            streamed = await client.request("POST", "/", body=b"y" * 100)
            assert streamed.status == 413
            assert (await client.request("POST", "/", body=b"small")).status == 200
            # Request trailers end the body; ASGI has no place for their fields.
            stream_id = client.start_request("POST", "/", body=b"abc", end=False)
            client.h3.send_headers(stream_id, [(b"x-trailer", b"1")], end_stream=True)
            client.transmit()
            response = client.responses[stream_id]
            await asyncio.wait_for(response.done.wait(), 5)
            assert bytes(response.body) == b"abc"

    with run_server(echo_app, **h3_server_kwargs(tls_files, limit_request_body=10)) as server:
        asyncio.run(main(server.port))


def test_udp_port_in_use_fails_startup(tls_files: dict[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="failed to start"):
            with run_server(echo_app, **h3_server_kwargs(tls_files, port=port)):
                pass


def test_bind_udp_socket_reuse_port() -> None:
    from roadrunner.protocols.quic import bind_udp_socket

    first = bind_udp_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    second = bind_udp_socket("127.0.0.1", port, reuse_port=True)  # a second worker
    try:
        assert second.getsockname()[1] == port
        with pytest.raises(ConfigError, match="Cannot bind UDP"):
            bind_udp_socket("127.0.0.1", port)
    finally:
        first.close()
        second.close()


def test_cli_h3_flags() -> None:
    from roadrunner.cli import main

    context = main.make_context("roadrunner", [
        "app:app", "--protocols", "h1,h2,h3", "--h3-max-concurrent-streams", "7",
        "--h3-max-field-section-size", "999", "--h3-idle-timeout", "2.5",
        "--h3-max-connections", "3", "--h3-retry", "--h3-max-stream-data", "1000",
        "--h3-max-data", "5000", "--h3-qpack-max-table-capacity", "0",
        "--h3-qpack-blocked-streams", "0", "--no-h3-gso", "--no-alt-svc",
    ])
    params = context.params
    assert params["h3_max_concurrent_streams"] == 7
    assert params["h3_max_field_section_size"] == 999
    assert params["h3_idle_timeout"] == 2.5
    assert params["h3_max_connections"] == 3
    assert params["h3_retry"] is True
    assert params["h3_max_stream_data"] == 1000
    assert params["h3_max_data"] == 5000
    assert params["h3_qpack_max_table_capacity"] == 0
    assert params["h3_qpack_blocked_streams"] == 0
    assert params["h3_gso"] is False
    assert params["alt_svc"] is False
